// Package scattergather is the Scatter-Gather pattern as a Kafka stream
// processor: a request is split into tasks that run in parallel on
// stateless workers (scatter), and their answers are folded by a stateful
// gather into one consolidated event per request, exactly once.
//
// The packages:
//   - schemas: the wire contract: the Avro schemas of every record, their
//     codec (single-object encoding or a schema registry's framing), the
//     dead-letter kinds and headers, the request-id rules;
//   - processor/topology: topology.yaml, the description of the flows;
//   - processor/scatter, processor/worker, processor/gather: the roles'
//     logic, free of Kafka (the gather's fold is pure: record and log time
//     in, state changes and outputs out; its recovery plan is a function);
//   - processor/payload: JSON field paths, for fan-out and consolidation;
//   - processor/kafka: the roles run on Kafka with franz-go, their options,
//     hooks and supervision;
//   - processor/admin: operator tooling: topic creation, replay, send and
//     tail;
//   - processor/observe: the operations HTTP server (/metrics, /healthz,
//     /readyz);
//   - processor/gateway: the request-reply HTTP gateway: a caller POSTs a
//     request and gets its aggregate;
//   - store: the gather's Pebble state;
//   - cmd/scattergather: the command, flags and wiring only;
//   - internal/metrics: the Prometheus metrics, through the roles' hooks;
//   - internal/demo: the demo the command runs: simulated providers, load
//     and report;
//   - internal/bench: the benchmark behind `scattergather bench`;
//   - internal/collect: a read_committed reader of a flow's aggregates
//     that notes each request's first arrival, for the demo, the benchmark
//     and the fault suite;
//   - internal/load: the open-loop send schedule they share;
//   - internal/processortest: brokers, a schema registry and harnesses for
//     tests;
//   - examples/python-worker: a worker in Python, tested beside the Go roles;
//   - test/faults: the fault suite, the binary killed and restarted;
//   - test/cluster: the same on a three-node cluster: brokers killed,
//     coordinators lost, rebalance storms.
package scattergather

import _ "embed"

// ExampleTopology is the repository's topology.yaml: a flow that asks three
// flight-price providers and keeps the cheapest offer. The demo runs it.
//
//go:embed topology.yaml
var ExampleTopology []byte
