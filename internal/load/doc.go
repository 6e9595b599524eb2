// Package load paces an open-loop load: request i leaves at its planned
// time, start + i/rate, whether or not the requests before it have been
// answered, so that a slow pipeline cannot slow down the load that
// measures it (no coordinated omission). The demo, the benchmark and the
// fault suite send on such a schedule.
package load
