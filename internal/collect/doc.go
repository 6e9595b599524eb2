// Package collect watches a flow's aggregated topic the way a downstream
// consumer sees it: a read_committed reader that decodes each aggregate,
// notes when each request id's first aggregate arrived, counts the
// duplicates, and lets a caller wait until a set of request ids has
// arrived. The demo, the benchmark and the fault suite measure the
// pipeline with it.
package collect
