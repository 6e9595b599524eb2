package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/bench"
	"github.com/scattergather/scattergather/internal/processortest"
)

// The harness itself: a short low-load step gets every request's
// aggregate and a latency for each, and times the scatter's and the
// gather's transactions of its window.
func runScenarioLowLoad(t *testing.T, brokers []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := bench.Config{Brokers: brokers, Warmup: 200 * time.Millisecond, Window: time.Second, LowRate: 50, LowOnly: true}
	res, err := bench.RunScenario(ctx, cfg, bench.Scenario{Name: "t", Fanout: 3, Strategy: "all"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := res.LowLoad
	if st == nil || st.Sent == 0 || st.Received != st.Sent || st.Latency.P50 <= 0 || st.Latency.Max < st.Latency.P50 {
		t.Fatalf("low-load step %+v", st)
	}
	for _, role := range []string{"scatter", "gather"} {
		if tx := st.Transactions[role]; tx == nil || tx.PerSecond <= 0 || tx.Records <= 0 || tx.P50Ms <= 0 || tx.P99Ms < tx.P50Ms {
			t.Errorf("%s's transactions in the window: %+v", role, tx)
		}
	}
	// The scenario's topics and groups are gone from the cluster.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Flow == "" {
		t.Fatal("the result does not name the scenario's flow")
	}
	var left []string
	for _, name := range append(topics.Names(), groups.Groups()...) {
		if strings.Contains(name, res.Flow) {
			left = append(left, name)
		}
	}
	if len(left) > 0 {
		t.Errorf("the scenario left %q on the cluster", left)
	}
}

func TestScenarioLowLoad(t *testing.T) { runScenarioLowLoad(t, processortest.Fake(t)) }

func TestIntegrationScenarioLowLoad(t *testing.T) { runScenarioLowLoad(t, processortest.Brokers(t)) }

func TestStateFiresWhatIsDue(t *testing.T) {
	st, err := bench.State(t.TempDir(), 20_000)
	if err != nil {
		t.Fatal(err)
	}
	if st.Open != 20_000 || st.DiskMiB <= 0 || st.RSSMiB <= 0 || len(st.Fire) != 3 {
		t.Fatalf("state %+v", st)
	}
	for i, want := range []bench.Fire{{Open: 10_000, Due: 1_000}, {Open: 20_000, Due: 1_000}, {Open: 19_000, Due: 10_000}} {
		if got := st.Fire[i]; got.Open != want.Open || got.Due != want.Due {
			t.Errorf("fire %d: %d due among %d open, want %d among %d", i, got.Due, got.Open, want.Due, want.Open)
		}
	}
}

// The gateway's harness: every request sent through the gateway is
// answered with its aggregate, read once, with both latencies.
func TestGatewayLowLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := bench.Config{Brokers: processortest.Fake(t), Warmup: 200 * time.Millisecond, Window: time.Second, LowRate: 50, LowOnly: true}
	res, err := bench.RunGateway(ctx, cfg, bench.Scenario{Name: "t", Fanout: 3, Strategy: "all"}, []int{4})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 {
		t.Fatalf("%d steps, want open and closed", len(res.Steps))
	}
	for _, st := range res.Steps {
		if st.Sent == 0 || st.OK != st.Sent || st.Aggregates != st.Sent || st.Duplicates != 0 ||
			st.Client.P50 <= 0 || st.Pipeline.P50 <= 0 {
			t.Errorf("%s step %+v", st.Mode, st)
		}
	}
}
