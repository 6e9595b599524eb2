package processortest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// Topology parses a one-flow topology for brokers whose flow, written as
// the YAML body of one list item without its name, gets a unique name.
func Topology(t testing.TB, brokers []string, flowBody string) (*topology.Topology, *topology.Flow) {
	t.Helper()
	name := Unique("t")
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  group_prefix: %s\nflows:\n  - name: %s\n", strings.Join(brokers, ", "), name, name)
	for _, line := range strings.Split(strings.TrimSpace(flowBody), "\n") {
		b.WriteString("    " + line + "\n")
	}
	topo, err := topology.Parse(name+".yaml", []byte(b.String()), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("topology:\n%s\n%v", b.String(), err)
	}
	return topo, topo.Flows[0]
}

// CreateTopics creates the flow's topics or fails the test.
func CreateTopics(t testing.TB, topo *topology.Topology, f *topology.Flow) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := admin.CreateTopics(ctx, topo, []*topology.Flow{f})
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("create topic %s: %v", r.Topic, r.Err)
		}
	}
}

// Start runs runners in the background until the test ends (or stop is
// called), waits until each has been assigned partitions, and fails the
// test if one of them fails.
func Start(t testing.TB, runners ...kafka.Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kafka.RunAll(ctx, runners...) }()
	timeout := time.After(2 * time.Minute)
	for _, r := range runners {
		select {
		case <-r.Ready():
		case err := <-done:
			cancel()
			t.Fatalf("pipeline stopped before it was ready: %v", err)
		case <-timeout:
			cancel()
			t.Fatalf("%T not ready after 2m", r)
		}
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// Send writes requests and waits for their acknowledgement.
func Send(t testing.TB, topo *topology.Topology, reqs ...*schemas.Request) {
	t.Helper()
	withSender(t, topo, func(ctx context.Context, s *admin.Sender) {
		errs := make(chan error, len(reqs))
		for _, r := range reqs {
			if err := s.Send(ctx, r, func(err error) { errs <- err }); err != nil {
				t.Fatal(err)
			}
		}
		for range reqs {
			if err := <-errs; err != nil {
				t.Fatalf("send: %v", err)
			}
		}
	})
}

// SendRaw writes values to topic under key, one after the other, each
// acknowledged before the next: records the codec would refuse, or that
// stand for another role's output.
func SendRaw(t testing.TB, topo *topology.Topology, topic string, key []byte, values ...[]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kafka.ClientOptions(topo, "test")...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: key, Value: v}).FirstErr(); err != nil {
			t.Fatalf("send to %s: %v", topic, err)
		}
	}
}

// withSender calls fn with a sender of topo and a context that ends after
// a minute.
func withSender(t testing.TB, topo *topology.Topology, fn func(context.Context, *admin.Sender)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := admin.NewSender(topo)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fn(ctx, s)
}

// Records reads topic as a read_committed consumer from the start until it
// holds at least n records and has reached the topic's last stable offsets
// as they stood then, or fails the test after timeout. Reading on to the
// stable end is what lets a test see a duplicate written after the n-th.
func Records(t testing.TB, topo *topology.Topology, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(topo.Kafka.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are records too: keeping them lets the
		// position reach the last stable offset exactly.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	var end map[int32]int64
	pos := map[int32]int64{}
	reached := func() bool {
		for p, o := range end {
			if pos[p] < o {
				return false
			}
		}
		return true
	}
	for {
		if len(out) >= n && end == nil {
			ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
			if err != nil {
				t.Fatalf("list end offsets of %s: %v", topic, err)
			}
			end = map[int32]int64{}
			ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
		}
		if end != nil && reached() {
			return out
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d of %d records after %s", topic, len(out), n, timeout)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s[%d]: %v", topic, p, err) })
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				pos[r.Partition] = r.Offset + 1
				if !r.Attrs.IsControl() {
					out = append(out, r)
				}
			}
		})
	}
}

// Aggregates reads n aggregates of the flow (see Records), decodes them and
// fails the test on a duplicate request id.
func Aggregates(t testing.TB, topo *topology.Topology, f *topology.Flow, n int, timeout time.Duration) map[string]*schemas.Aggregate {
	t.Helper()
	recs := Records(t, topo, f.Topics.Aggregated, n, timeout)
	out := make(map[string]*schemas.Aggregate, len(recs))
	for _, r := range recs {
		var a schemas.Aggregate
		if err := schemas.DecodeInto(r.Value, &a); err != nil {
			t.Fatalf("aggregate at %d/%d: %v", r.Partition, r.Offset, err)
		}
		if prev, dup := out[a.RequestID]; dup {
			t.Errorf("request %s has two aggregates: %s and %s", a.RequestID, prev.Outcome, a.Outcome)
		}
		out[a.RequestID] = &a
	}
	if len(out) != n {
		t.Errorf("%d distinct aggregates, want %d", len(out), n)
	}
	return out
}

// Eventually polls cond every 10ms until it holds, or fails the test
// after timeout naming what it waited for.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Admin returns an admin client of topo's brokers, closed with the test.
func Admin(t testing.TB, topo *topology.Topology) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kafka.ClientOptions(topo, "test-admin")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// SetTopicConfig sets key=value on topic or fails the test.
func SetTopicConfig(t testing.TB, adm *kadm.Client, topic, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: key, Value: &value}}, topic)
	if err == nil {
		_, err = rs.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("set %s=%s on %s: %v", key, value, topic, err)
	}
}
