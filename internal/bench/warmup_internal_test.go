package bench

import (
	"context"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
)

// The warm-up steps run at the start rate, as many as configured, each
// with every request aggregated, and none with LowOnly or a negative
// count.
func TestWarmUpSteps(t *testing.T) {
	brokers := processortest.Fake(t)
	for _, tc := range []struct {
		name    string
		steps   int
		lowOnly bool
		want    int
	}{
		{name: "two", steps: 2, want: 2},
		{name: "none", steps: -1, want: 0},
		{name: "low only", steps: 2, lowOnly: true, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cfg := Config{Brokers: brokers, Warmup: 100 * time.Millisecond, Window: 500 * time.Millisecond,
				StartRate: 40, WarmupSteps: tc.steps, LowOnly: tc.lowOnly}
			r, s, err := startWithSender(ctx, cfg, Scenario{Name: "t", Fanout: 2, Strategy: "all"})
			if err != nil {
				t.Fatal(err)
			}
			defer r.stop()
			defer s.Close()
			steps, err := r.warmUp(ctx, s, "t")
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != tc.want {
				t.Fatalf("%d warm-up steps, want %d", len(steps), tc.want)
			}
			for i, st := range steps {
				if st.Rate != 40 || st.Sent != 20 || st.Received != st.Sent {
					t.Errorf("warm-up step %d: rate %.0f, %d sent, %d received; want 40, 20, 20", i, st.Rate, st.Sent, st.Received)
				}
			}
		})
	}
}
