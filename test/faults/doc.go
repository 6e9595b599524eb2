// Package faults is the fault suite: it runs each role as a real OS
// process (the scattergather binary) against a real broker under a steady
// load, kills, stops and restarts roles and the broker, and checks what a
// downstream read_committed consumer sees: every request aggregated exactly
// once, with the outcome and value of a fault-free run; and that the HTTP
// gateway answers a request 503 with Retry-After through a broker outage,
// not ready meanwhile, and the aggregate once the broker is back. Its
// tests need a broker (SG_KAFKA_BROKERS) and, to stop and restart it,
// scripts/kafka.sh (SG_KAFKA_SCRIPT).
package faults
