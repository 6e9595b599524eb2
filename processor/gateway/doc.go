// Package gateway is scattergather's request-reply HTTP gateway: a plain
// HTTP client posts a JSON request to a flow and gets the flow's
// consolidated answer (its aggregate) in the response, with the same
// exactly-once pipeline behind it.
//
// A POST /v1/flows/{flow}/requests produces one request record (an
// idempotent producer, keyed by the request id) to the flow's request
// topic, then waits for the request's aggregate. The aggregates come from
// a read_committed consumer of each flow's aggregated topic that feeds a
// bounded, time-limited local index (Index): every gateway instance reads
// every aggregate of the flows it serves, outside any consumer group, so
// any instance behind a load balancer can answer a GET for any request
// whose aggregate it has read. The cost is one read of the aggregated
// topic per instance: a decode and a JSON encoding per aggregate, and the
// index's memory (bounded by WithIndex).
//
// A request whose aggregate is not there within the wait (Prefer: wait=N,
// RFC 7240, or ?wait=) is answered 202 Accepted with a Location to poll;
// errors are problem details (RFC 9457, application/problem+json).
package gateway
