// Package demo runs the example flow end to end in one process: an
// in-process Kafka (kfake), simulated flight-price providers over HTTP, the
// scatter, worker and gather roles, an open-loop load of requests, and a
// report of what a read_committed consumer of the aggregates saw (exactly
// once or not, outcomes, latency, provider calls). `scattergather demo`
// and `scattergather providers` are its front ends.
package demo
