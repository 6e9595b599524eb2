package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/internal/proctest"
	"github.com/scattergather/scattergather/processor/gateway"
	"github.com/scattergather/scattergather/processor/kafka"
)

// hangBound is how long a POST may go unanswered before the test calls it
// a hang: far beyond the gateway's produce timeout.
const hangBound = 30 * time.Second

// gatewayAnswer is what the gateway answered a POST.
type gatewayAnswer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

func post(t *testing.T, base, flow, id string) gatewayAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/flows/"+flow+"/requests?wait=20s", strings.NewReader(`{"q":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	start := time.Now()
	resp, err := (&http.Client{Timeout: hangBound}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: no answer (%v)", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", id, err)
	}
	return gatewayAnswer{resp.StatusCode, resp.Header, b, time.Since(start)}
}

// aggregateOf posts request id until the gateway answers its aggregate
// (honouring Retry-After on a 503, posting again on a 202), and checks it
// is complete with the cheapest of the three answers.
func aggregateOf(t *testing.T, base, flow, id string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		a := post(t, base, flow, id)
		switch a.status {
		case http.StatusOK:
			var agg struct {
				RequestID string `json:"request_id"`
				Outcome   string `json:"outcome"`
				Result    struct{ Value int }
			}
			if err := json.Unmarshal(a.body, &agg); err != nil {
				t.Fatalf("%s: aggregate %s: %v", id, a.body, err)
			}
			want := min(proctest.Price(id+"/a"), proctest.Price(id+"/b"), proctest.Price(id+"/c"))
			if agg.RequestID != id || agg.Outcome != "complete" || agg.Result.Value != want {
				t.Errorf("%s: aggregate %s, want complete with %d", id, a.body, want)
			}
			return
		case http.StatusAccepted:
		case http.StatusServiceUnavailable:
			secs, err := strconv.Atoi(a.header.Get("Retry-After"))
			if err != nil || secs < 1 {
				t.Fatalf("%s: 503 with Retry-After %q", id, a.header.Get("Retry-After"))
			}
			<-time.After(time.Duration(secs) * time.Second)
		default:
			t.Fatalf("%s: %d %s", id, a.status, a.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no aggregate within 3 minutes; last answer %d %s", id, a.status, a.body)
		}
	}
}

// gatewayStatus is the gateway's status in the process's /readyz.
func gatewayStatus(t *testing.T, pr *proctest.Proc) (kafka.Status, bool) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + pr.Addr() + "/readyz")
	if err != nil {
		return kafka.Status{}, false
	}
	defer resp.Body.Close()
	var rz struct{ Roles []kafka.Status }
	if err := json.NewDecoder(resp.Body).Decode(&rz); err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	for _, st := range rz.Roles {
		if st.Role == gateway.Role {
			return st, true
		}
	}
	t.Fatalf("/readyz has no gateway: %+v", rz.Roles)
	return kafka.Status{}, false
}

// TestIntegrationGatewayBrokerOutage: with the broker stopped, a POST to
// the gateway (run --role all) is answered 503 with Retry-After and a
// problem body, never a hang, and /readyz says the gateway is not ready
// and why, before any request and after the 503; once the broker is back, the same request and a new one get
// their aggregates.
func TestIntegrationGatewayBrokerOutage(t *testing.T) {
	brokers := processortest.Brokers(t)
	script := os.Getenv("SG_KAFKA_SCRIPT")
	if script == "" {
		t.Skip("SG_KAFKA_SCRIPT is not set: the broker cannot be stopped")
	}
	p := newPipeline(t, brokers, "10s", "")
	all := p.Start("all", kafka.RoleAll, "a1", "--gateway-addr", "127.0.0.1:0", "--state-dir", filepath.Join(p.Dir, "state-a1"))
	p.WaitReady(all)
	base := "http://" + all.GatewayAddr()
	if base == "http://" {
		t.Fatal("the gateway did not log its address")
	}
	for i := range 3 {
		aggregateOf(t, base, p.Flow.Name, fmt.Sprintf("before-%d", i))
	}

	broker := func(cmd string) {
		t.Helper()
		start := time.Now()
		if out, err := exec.Command(script, cmd).CombinedOutput(); err != nil {
			t.Fatalf("broker %s: %v\n%s", cmd, err, out)
		}
		t.Logf("broker %s took %s", cmd, time.Since(start).Round(10*time.Millisecond))
	}
	// Later tests need the broker, whatever happens here.
	t.Cleanup(func() {
		if out, err := exec.Command(script, "start").CombinedOutput(); err != nil {
			t.Errorf("broker start: %v\n%s", err, out)
		}
	})
	broker("stop")
	// Without a request, the gateway finds out by asking the broker.
	for deadline := time.Now().Add(time.Minute); ; {
		st, ok := gatewayStatus(t, all)
		if ok && !st.Ready {
			t.Logf("/readyz with the broker stopped, before any request: gateway not ready: %s", st.Detail)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz a minute after the broker stopped: gateway %+v (answered %v), want not ready", st, ok)
		}
		<-time.After(100 * time.Millisecond)
	}

	a := post(t, base, p.Flow.Name, "during")
	var prob gateway.Problem
	if err := json.Unmarshal(a.body, &prob); err != nil || a.status != http.StatusServiceUnavailable ||
		a.header.Get("Content-Type") != "application/problem+json" || prob.Type != "urn:scattergather:problem:"+gateway.ProblemUnavailable ||
		prob.RequestID != "during" || a.header.Get("Retry-After") == "" {
		t.Fatalf("POST with the broker stopped: %d %v %s, want 503 %s with Retry-After", a.status, a.header, a.body, gateway.ProblemUnavailable)
	}
	t.Logf("POST with the broker stopped: 503 in %s, Retry-After %s: %s", a.took.Round(10*time.Millisecond), a.header.Get("Retry-After"), prob.Detail)
	st, ok := gatewayStatus(t, all)
	if !ok || st.Ready || st.Detail == "" {
		t.Fatalf("/readyz after the 503: gateway %+v (answered %v), want not ready with why", st, ok)
	}
	t.Logf("/readyz with the broker stopped: gateway not ready: %s", st.Detail)

	broker("start")
	aggregateOf(t, base, p.Flow.Name, "during")
	aggregateOf(t, base, p.Flow.Name, "after")
	p.WaitReady(all)
	p.UnexpectedExits()
}
