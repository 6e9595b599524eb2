// Package admin is scattergather's operator tooling, apart from the roles:
// creating a flow's topics, replaying a stage by resetting its group's
// offsets (with a new state epoch for the gather), and the small producer
// and read_committed reader behind the send and tail commands. It makes
// its clients with kafka.ClientOptions, so they connect as the roles do.
package admin
