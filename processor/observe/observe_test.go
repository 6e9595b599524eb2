package observe

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scattergather/scattergather/processor/kafka"
)

// statusRunner is a Runner whose readiness the test sets.
type statusRunner struct {
	flow, role string
	ready      atomic.Bool
}

func (r *statusRunner) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (r *statusRunner) Ready() <-chan struct{}        { return nil }
func (r *statusRunner) Status() kafka.Status {
	return kafka.Status{Flow: r.flow, Role: r.role, Ready: r.ready.Load()}
}

func TestHandlerRoleReady(t *testing.T) {
	scatter := &statusRunner{flow: "f", role: "scatter"}
	w1 := &statusRunner{flow: "f", role: "worker"}
	w2 := &statusRunner{flow: "f", role: "worker"}
	srv := httptest.NewServer(Handler(prometheus.NewRegistry(), []kafka.Runner{scatter, w1, w2}))
	defer srv.Close()
	fetch := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	check := func(want ...string) {
		t.Helper()
		_, text := fetch("/metrics")
		for _, w := range want {
			if !strings.Contains(text, w+"\n") {
				t.Errorf("/metrics lacks %s", w)
			}
		}
	}

	check(`scattergather_role_ready{flow="f",role="scatter"} 0`, `scattergather_role_ready{flow="f",role="worker"} 0`)
	scatter.ready.Store(true)
	w2.ready.Store(true)
	// One of the flow's two workers is not ready: the flow's worker is not.
	check(`scattergather_role_ready{flow="f",role="scatter"} 1`, `scattergather_role_ready{flow="f",role="worker"} 0`)
	if code, _ := fetch("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz: %d, want 503", code)
	}
	w1.ready.Store(true)
	check(`scattergather_role_ready{flow="f",role="scatter"} 1`, `scattergather_role_ready{flow="f",role="worker"} 1`)
	if code, _ := fetch("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d, want 200", code)
	}
	// Back to not ready: the gauge follows at the next scrape.
	scatter.ready.Store(false)
	check(`scattergather_role_ready{flow="f",role="scatter"} 0`)
}
