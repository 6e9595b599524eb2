// Package faults is the fault suite: it runs each role as a real OS
// process (the scattergather binary) against a real broker under a steady
// load, kills, stops and restarts roles and the broker, and checks what a
// downstream read_committed consumer sees: every request aggregated exactly
// once, with the outcome and value of a fault-free run. Its tests need a
// broker (SG_KAFKA_BROKERS) and, for the broker restart, scripts/kafka.sh
// (SG_KAFKA_SCRIPT).
package faults
