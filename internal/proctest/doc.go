// Package proctest runs the scattergather binary as real OS processes
// against real brokers under a steady load and checks what a
// read_committed consumer sees: every request aggregated exactly once,
// with the outcome and value of a fault-free run. It builds the binary,
// serves three deterministic HTTP targets, launches, kills, stops and
// restarts roles, paces the load (internal/load) and reads the aggregates
// as they arrive (internal/collect). The fault suites, test/faults on one
// broker and test/cluster on three, are built on it.
package proctest
