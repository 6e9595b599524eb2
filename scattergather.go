// Package scattergather is the Scatter-Gather pattern as a Kafka stream
// processor: a request is split into tasks that run in parallel on
// stateless workers (scatter), and their answers are folded by a stateful
// gather into one consolidated event per request, exactly once.
//
// The packages:
//   - schemas: the Avro contract of every record and its codec;
//   - processor/topology: topology.yaml, the description of the flows;
//   - processor/scatter, processor/worker, processor/gather: the roles, free
//     of Kafka (the gather's fold is pure: record and log time in, state
//     changes and outputs out);
//   - processor/kafka: the Kafka glue that runs the roles with franz-go;
//   - store: the gather's Pebble state;
//   - cmd/scattergather: the command, flags and wiring only;
//   - internal/demo: the demo the command runs: simulated providers, load
//     and report;
//   - internal/bench: the benchmark behind `scattergather bench`;
//   - internal/collect: a read_committed reader of a flow's aggregates
//     that notes each request's first arrival, for the demo, the benchmark
//     and the fault suite;
//   - internal/load: the open-loop send schedule they share;
//   - internal/processortest: brokers and harnesses for tests;
//   - test/faults: the fault suite, the binary killed and restarted.
package scattergather

import _ "embed"

// ExampleTopology is the repository's topology.yaml: a flow that asks three
// flight-price providers and keeps the cheapest offer. The demo runs it.
//
//go:embed topology.yaml
var ExampleTopology []byte
