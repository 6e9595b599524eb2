package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
)

// syncBuffer is a bytes.Buffer that a running command writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logged returns the attributes of the first JSON log line whose msg
// starts with prefix.
func (s *syncBuffer) logged(prefix string) map[string]any {
	for _, line := range strings.Split(s.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
				return rec
			}
		}
	}
	return nil
}

// Two roles run side by side on one host without --http-addr: both serve
// /healthz on loopback, the second (or both, if another process holds the
// default port) on an ephemeral port that it logs. An address given with
// --http-addr that is taken fails with a message naming the flag.
func TestRunRolesSideBySide(t *testing.T) { testRunRolesSideBySide(t, processortest.Fake(t)) }

func TestIntegrationRunRolesSideBySide(t *testing.T) {
	testRunRolesSideBySide(t, processortest.Brokers(t))
}

func testRunRolesSideBySide(t *testing.T, brokers []string) {
	flow := processortest.Unique("ops")
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{}`) }))
	defer p.Close()
	topo := writeFile(t, "topology.yaml", fmt.Sprintf("kafka: {brokers: [%s]}\nflows:\n  - name: %s\n    timeout: 5s\n    targets: [{name: one, http: {url: %q}}]\n",
		brokers[0], flow, p.URL))
	if r := runCmd(context.Background(), "", "topics", "create", "--topology", topo); r.code != exitOK {
		t.Fatalf("topics create: %+v", r)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type running struct {
		role   string
		stderr *syncBuffer
		done   chan int
		addr   string
	}
	var roles []*running
	for _, role := range []string{"scatter", "worker"} {
		r := &running{role: role, stderr: &syncBuffer{}, done: make(chan int, 1)}
		roles = append(roles, r)
		go func() {
			r.done <- run(ctx, []string{"run", "--topology", topo, "--role", role, "--log-format", "json"}, strings.NewReader(""), &bytes.Buffer{}, r.stderr)
		}()
		processortest.Eventually(t, 30*time.Second, role+" serving /healthz", func() bool {
			select {
			case code := <-r.done:
				t.Fatalf("run --role %s exited %d: %s", role, code, r.stderr)
			default:
			}
			rec := r.stderr.logged("serving /metrics")
			if rec == nil {
				return false
			}
			r.addr, _ = rec["addr"].(string)
			return true
		})
	}
	for _, r := range roles {
		host, _, err := net.SplitHostPort(r.addr)
		if err != nil || host != "127.0.0.1" {
			t.Errorf("%s serves on %q, want a loopback address", r.role, r.addr)
		}
		if r.addr != defaultHTTPAddr && r.stderr.logged("the default --http-addr is in use") == nil {
			t.Errorf("%s serves on %s without saying why not on %s:\n%s", r.role, r.addr, defaultHTTPAddr, r.stderr)
		}
		if body := get(t, "http://"+r.addr+"/healthz", http.StatusOK); body != "ok\n" {
			t.Errorf("%s /healthz: %q", r.role, body)
		}
	}
	if roles[0].addr == roles[1].addr {
		t.Errorf("both roles claim %s", roles[0].addr)
	}

	// An address given explicitly is not replaced.
	taken := roles[0].addr
	r := runCmd(context.Background(), "", "run", "--topology", topo, "--role", "worker", "--http-addr", taken)
	if want := "--http-addr " + taken + " is already in use (another role on this host?): give each process its own --http-addr"; r.code != exitFail || !strings.Contains(r.stderr, want) {
		t.Errorf("explicit taken address: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}

	cancel()
	for _, r := range roles {
		select {
		case code := <-r.done:
			if code != exitOK {
				t.Errorf("run --role %s exited %d: %s", r.role, code, r.stderr)
			}
		case <-time.After(time.Minute):
			t.Fatalf("run --role %s did not stop within a minute of its context ending", r.role)
		}
	}
}
