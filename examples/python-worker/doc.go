// Package pythonworker tests the Python worker of this directory
// (worker.py): a worker in another language, written from the wire
// contract alone (schemas/README.md), serving a target beside the Go
// scatter, gather and workers against a real broker.
package pythonworker
