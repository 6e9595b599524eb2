// Package gctune sets the Go garbage collector for a long-running
// scattergather process: where a memory limit is known, a higher GOGC
// than Go's default of 100, because
// the roles' live heap is small and their allocation rate high, so that at
// GOGC=100 the collector runs many times a second and its assists and
// stack scans (every task in flight has a goroutine) cost a large share
// of the CPU; and, in a container with a memory limit, a soft memory limit
// below it, so that the higher GOGC cannot take the process past it.
// Without a limit the collector keeps Go's default.
//
// The environment wins: GOGC and GOMEMLIMIT, when set, are left as the
// Go runtime read them.
package gctune

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// DefaultPercent is GOGC when the environment does not set it and a
// memory limit is known.
const DefaultPercent = 400

// LimitShare is the share of a container's memory limit the soft memory
// limit is set to when the environment does not set GOMEMLIMIT: the rest
// is for what the Go heap does not count (Pebble's block cache, thread
// stacks, the page cache the cgroup charges).
const LimitShare = 0.9

// Settings are the collector's settings and where each came from.
type Settings struct {
	// Percent is GOGC; PercentFrom "environment", "default" (a memory
	// limit is known) or "go default, no memory limit".
	Percent     int    `json:"gogc"`
	PercentFrom string `json:"gogc_from"`
	// Limit is the soft memory limit in bytes, 0 for none; LimitFrom
	// "environment", "container" (LimitShare of the cgroup's limit) or
	// "none".
	Limit     int64  `json:"memory_limit_bytes,omitempty"`
	LimitFrom string `json:"memory_limit_from"`
}

// Plan returns the settings for an environment (getenv) and a container
// memory limit (0: none) without applying them. GOGC is raised to
// DefaultPercent only where a memory limit bounds the heap (the
// environment's GOMEMLIMIT or the container's); without one, Go's default
// of 100 stays, so that a backlog cannot take a process five times its
// live heap on a machine it shares.
func Plan(getenv func(string) (string, bool), containerLimit int64) Settings {
	s := Settings{LimitFrom: "none"}
	if v, ok := getenv("GOMEMLIMIT"); ok && v != "" {
		s.LimitFrom = "environment"
	} else if containerLimit > 0 {
		s.Limit, s.LimitFrom = int64(float64(containerLimit)*LimitShare), "container"
	}
	switch v, ok := getenv("GOGC"); {
	case ok && v != "":
		s.PercentFrom, s.Percent = "environment", 100
		if strings.EqualFold(v, "off") {
			s.Percent = -1
		} else if n, err := strconv.Atoi(v); err == nil {
			s.Percent = n
		}
	case s.LimitFrom != "none":
		s.PercentFrom, s.Percent = "default", DefaultPercent
	default:
		s.PercentFrom, s.Percent = "go default, no memory limit", 100
	}
	return s
}

// Apply sets the collector as Plan says for this process's environment and
// cgroup, and returns what it set. The environment's settings are left to
// the runtime, which read them at start.
func Apply() Settings {
	limit, _ := ContainerLimit(os.DirFS("/"))
	s := Plan(os.LookupEnv, limit)
	if s.PercentFrom == "default" {
		debug.SetGCPercent(s.Percent)
	}
	switch s.LimitFrom {
	case "container":
		debug.SetMemoryLimit(s.Limit)
	case "environment":
		s.Limit = debug.SetMemoryLimit(-1) // reads it
	}
	return s
}

// ContainerLimit returns the memory limit of the cgroup this process runs
// in, read from root (the file system's root): cgroup v2's memory.max of
// the process's cgroup (or of the namespace's root, as inside a
// container), else cgroup v1's memory.limit_in_bytes (of the process's
// memory cgroup, else of the root). False when there is none, or no cgroup
// to read.
func ContainerLimit(root fs.FS) (int64, bool) {
	var v2, v1 []string
	if f, err := root.Open("proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// "hierarchy:controllers:path"; cgroup v2's is "0::path".
			parts := strings.SplitN(sc.Text(), ":", 3)
			switch {
			case len(parts) != 3:
			case parts[0] == "0" && parts[1] == "":
				v2 = append(v2, path.Join("sys/fs/cgroup", parts[2], "memory.max"))
			case slices.Contains(strings.Split(parts[1], ","), "memory"):
				v1 = append(v1, path.Join("sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
			}
		}
		f.Close()
	}
	for _, name := range append(v2, "sys/fs/cgroup/memory.max") {
		if n, ok := readLimit(root, name); ok {
			return n, n > 0
		}
	}
	for _, name := range append(v1, "sys/fs/cgroup/memory/memory.limit_in_bytes") {
		// cgroup v1 says "no limit" with a huge number.
		if n, ok := readLimit(root, name); ok && n > 0 && n < 1<<60 {
			return n, true
		}
	}
	return 0, false
}

// readLimit reads a cgroup memory limit file: a number of bytes, or "max"
// (no limit, returned as 0 and true).
func readLimit(root fs.FS, name string) (int64, bool) {
	b, err := fs.ReadFile(root, name)
	if err != nil {
		return 0, false
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// String says the settings as the bench's report shows them: "GOGC 400
// (default), memory limit 1843 MiB (container)".
func (s Settings) String() string {
	gogc := strconv.Itoa(s.Percent)
	if s.Percent < 0 {
		gogc = "off"
	}
	if s.PercentFrom == "" {
		return "GC settings unknown"
	}
	limit := "none"
	if s.LimitFrom != "none" {
		limit = fmt.Sprintf("%d MiB (%s)", s.Limit>>20, s.LimitFrom)
	}
	return fmt.Sprintf("GOGC %s (%s), memory limit %s", gogc, s.PercentFrom, limit)
}
