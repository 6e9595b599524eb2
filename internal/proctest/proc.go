package proctest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBinary names a scattergather binary to run instead of building one.
const EnvBinary = "SG_BINARY"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the scattergather binary: SG_BINARY, or one built once
// per test binary from ./cmd/scattergather.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(EnvBinary); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "sg-proctest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "scattergather")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/scattergather/scattergather/cmd/scattergather").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Proc is one run of the binary; its output goes to the file Log.
type Proc struct {
	Name string   // what the test calls it, e.g. "gather2"
	Args []string // the command line after the binary
	Log  string   // path of the file with its stdout and stderr

	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	ending bool // the test stopped it: an exit is expected
}

// launch starts the binary; a goroutine waits for it and closes done.
func (pr *Proc) launch(t testing.TB, bin string) {
	t.Helper()
	f, err := os.Create(pr.Log)
	if err != nil {
		t.Fatal(err)
	}
	pr.cmd = exec.Command(bin, pr.Args...)
	pr.cmd.Stdout, pr.cmd.Stderr = f, f
	if err := pr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.done = make(chan struct{})
	go func() {
		_ = pr.cmd.Wait()
		f.Close()
		close(pr.done)
	}()
}

// Addr is where the process serves /metrics and /readyz, read off its
// JSON log; "" until it logged it.
func (pr *Proc) Addr() string { return pr.AddrOf("serving /metrics") }

// GatewayAddr is where the process serves the HTTP gateway's flow
// requests, read off its JSON log; "" until it logged it.
func (pr *Proc) GatewayAddr() string { return pr.AddrOf("serving flow requests") }

// AddrOf is the addr attribute of the first line of the process's JSON
// log that contains msg; "" until there is one.
func (pr *Proc) AddrOf(msg string) string {
	b, _ := os.ReadFile(pr.Log)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var l struct{ Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Addr != "" {
			return l.Addr
		}
	}
	return ""
}

// Running reports whether the process has not exited.
func (pr *Proc) Running() bool {
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

// CountLog counts the occurrences of s in the process's log.
func (pr *Proc) CountLog(s string) int {
	b, _ := os.ReadFile(pr.Log)
	return strings.Count(string(b), s)
}

// WaitLog polls the log until s occurs n times in it, and reports
// whether it did within timeout.
func (pr *Proc) WaitLog(s string, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if pr.CountLog(s) >= n {
			return true
		}
		<-time.After(20 * time.Millisecond)
	}
	return false
}

// lastLines returns the last n lines of the log, all of them if n < 0.
func (pr *Proc) lastLines(n int) string {
	b, _ := os.ReadFile(pr.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if n < 0 {
		n = len(lines)
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (pr *Proc) expectExit() {
	pr.mu.Lock()
	pr.ending = true
	pr.mu.Unlock()
}

func (pr *Proc) expectedExit() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.ending
}

// Signal sends sig to the process, e.g. SIGSTOP and then SIGCONT to
// freeze it for a while.
func (pr *Proc) Signal(sig os.Signal) error {
	if pr.cmd == nil || pr.cmd.Process == nil {
		return fmt.Errorf("%s: not started", pr.Name)
	}
	return pr.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (pr *Proc) Kill() {
	if pr.cmd == nil || pr.cmd.Process == nil {
		return
	}
	pr.expectExit()
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
}

// Term sends SIGTERM, waits for the process to exit and returns how long
// the shutdown took. It returns an error if the signal cannot be sent or
// the process is still running a minute later (it is killed then), and
// fails the test if the process exits non-zero. Safe to call from any
// goroutine.
func (pr *Proc) Term(t testing.TB) (time.Duration, error) {
	pr.expectExit()
	start := time.Now()
	if err := pr.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-pr.done:
	case <-time.After(time.Minute):
		pr.Kill()
		return time.Since(start), fmt.Errorf("%s did not exit within a minute of SIGTERM", pr.Name)
	}
	if code := pr.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exited with %d after SIGTERM", pr.Name, code)
	}
	return time.Since(start), nil
}
