package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// CPU is what a step's measured window cost in processor time, in
// microseconds per request sent in the window.
type CPU struct {
	// Requests sent in the window.
	Requests int `json:"requests"`
	// Seconds the window lasted.
	Seconds float64 `json:"seconds"`
	// Profiled says the window ran under a CPU profile, which splits the
	// roles' time; false when another profile held the profiler
	// (--cpuprofile).
	Profiled bool `json:"profiled"`
	// ProfileError says why the window's profile could not be kept
	// (Config.ProfileDir).
	ProfileError string `json:"profile_error,omitempty"`
	// Each role's time, by the profiler label role that the roles run
	// under; Other is the rest of the bench process: the load generator,
	// the consumer that measures and the runtime's background work
	// (garbage collection not charged to an allocating goroutine).
	Scatter float64 `json:"scatter_us,omitempty"`
	Workers float64 `json:"workers_us,omitempty"`
	Gather  float64 `json:"gather_us,omitempty"`
	Other   float64 `json:"other_us,omitempty"`
	// Process is the bench process's user and system time
	// (/proc/self/stat), all of the above.
	Process float64 `json:"process_us"`
	// Broker is the broker process's, when its pid is known
	// (Config.BrokerPID).
	Broker float64 `json:"broker_us,omitempty"`
}

// Roles is the three roles' time per request, µs.
func (c *CPU) Roles() float64 { return c.Scatter + c.Workers + c.Gather }

// Shares returns each role's share of the roles' time: scatter, workers,
// gather, summing to 1 (all 0 without a profile).
func (c *CPU) Shares() (scatter, workers, gather float64) {
	t := c.Roles()
	if t == 0 {
		return 0, 0, 0
	}
	return c.Scatter / t, c.Workers / t, c.Gather / t
}

// roleOther is the share of samples without a role label.
const roleOther = "other"

// splitByRole sums the CPU time of a profile's samples by their label
// role; samples without one count as "other".
func splitByRole(p *profile.Profile) (map[string]time.Duration, error) {
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return nil, errors.New("bench: the profile has no cpu/nanoseconds samples")
	}
	out := map[string]time.Duration{}
	for _, s := range p.Sample {
		role := roleOther
		if r := s.Label["role"]; len(r) > 0 && r[0] != "" {
			role = r[0]
		}
		out[role] += time.Duration(s.Value[idx])
	}
	return out, nil
}

// meter measures a window's CPU: a CPU profile into a buffer when it can
// have the profiler, and the process's (and the broker's) CPU time.
type meter struct {
	prof      *bytes.Buffer
	start     time.Time
	self      time.Duration
	brokerPID int
	broker    time.Duration
	brokerOK  bool
}

// startMeter starts measuring; profile asks for the per-role split.
func startMeter(profile bool, brokerPID int) *meter {
	m := &meter{brokerPID: brokerPID}
	if profile {
		m.prof = &bytes.Buffer{}
		if err := pprof.StartCPUProfile(m.prof); err != nil {
			m.prof = nil // someone else's profile runs
		}
	}
	if brokerPID > 0 {
		m.broker, m.brokerOK = procCPU(strconv.Itoa(brokerPID))
	}
	m.self, _ = procCPU("self")
	m.start = time.Now()
	return m
}

// stop ends the measurement of requests sent in the window and writes the
// window's profile to keep, unless it is empty.
func (m *meter) stop(requests int, keep string) *CPU {
	elapsed := time.Since(m.start)
	self, _ := procCPU("self")
	c := &CPU{Requests: requests, Seconds: elapsed.Seconds()}
	per := func(d time.Duration) float64 {
		if requests == 0 {
			return 0
		}
		return float64(d.Microseconds()) / float64(requests)
	}
	c.Process = per(self - m.self)
	if m.brokerOK {
		if b, ok := procCPU(strconv.Itoa(m.brokerPID)); ok {
			c.Broker = per(b - m.broker)
		}
	}
	if m.prof != nil {
		pprof.StopCPUProfile()
		if keep != "" {
			if err := os.WriteFile(keep, m.prof.Bytes(), 0o644); err != nil {
				c.ProfileError = err.Error()
			}
		}
		if p, err := profile.Parse(m.prof); err == nil {
			if by, err := splitByRole(p); err == nil {
				c.Profiled = true
				c.Scatter, c.Workers, c.Gather, c.Other = per(by["scatter"]), per(by["worker"]), per(by["gather"]), per(by[roleOther])
			}
		}
	}
	return c
}

// clockTick is Linux's USER_HZ, the unit of /proc/PID/stat's times.
const clockTick = 10 * time.Millisecond

// procCPU returns the user and system time of /proc/<pid>/stat ("self"
// for this process); false where there is no such file.
func procCPU(pid string) (time.Duration, bool) {
	f, err := os.Open("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return 0, false
	}
	d, err := parseStat(string(b))
	return d, err == nil
}

// parseStat reads utime and stime (fields 14 and 15) of a /proc/PID/stat
// line; the command name in parentheses may hold spaces.
func parseStat(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, errors.New("bench: no command in the stat line")
	}
	f := strings.Fields(line[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: %d fields in the stat line", len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bench: stat line: %w", err)
	}
	return time.Duration(u+s) * clockTick, nil
}
