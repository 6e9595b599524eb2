// Package kafka runs scattergather's roles on Kafka with franz-go: the
// scatter (scatter.go), the worker (worker.go) and the gather (gather.go),
// the transactional session the scatter and the gather share (txn.go),
// their clients' setup and connection security (client.go, security.go),
// the topic requirements they check before starting (topics.go), and
// their supervision (run.go).
//
// The roles' logic lives in packages free of Kafka (scatter, worker,
// gather); this package only reads, calls them and writes. Options are
// typed per role (Opt for every role, WorkerOpt for workers), and the
// roles report what they do through hooks (Hook) that the metrics, or a
// program embedding the roles, implement. Operator tooling is in package
// admin and the operations HTTP server in package observe.
package kafka
