// Package worker runs tasks: the Handler API with its middleware (retry with
// backoff, timeout, recover, a circuit breaker per target), the built-in
// HTTP caller, Execute, which turns one task into exactly one result, and
// the Tracker that keeps many tasks in flight while committing offsets only
// up to the oldest unfinished one.
//
// Workers are stateless and at-least-once: a task re-run after a crash
// yields a duplicate result, which the gather counts once. Any program that
// reads tasks and writes results with the Avro contract of package schemas
// can be a worker.
package worker
