package kafka_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// rewrites counts the hooks' records rewritten, by "role topic how".
type rewrites struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *rewrites) OnRecordRewritten(_, role, topic, how string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[role+" "+topic+" "+how]++
}

func (r *rewrites) count(role, topic, how string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[role+" "+topic+" "+how]
}

// sendLarge writes value to topic with a producer whose batch limit
// (2 MiB) is above the roles' (franz-go's default, 1,000,012 bytes), as
// another writer of the flow's topics may.
func sendLarge(t *testing.T, topo *topology.Topology, topic string, key, value []byte) {
	t.Helper()
	cl, err := kgo.NewClient(append(kafka.ClientOptions(topo, "test"), kgo.ProducerBatchMaxBytes(2<<20))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: key, Value: value}).FirstErr(); err != nil {
		t.Fatalf("send %d bytes to %s: %v", len(value), topic, err)
	}
}

// checkCut sends a good request after original, which role could not
// write as it is, and checks that the good request completes and that
// original's one dead letter is original cut to fit: a prefix of its
// bytes, with its size and digest in the headers, told to the hooks.
func checkCut(t *testing.T, topo *topology.Topology, f *topology.Flow, rw *rewrites, original []byte, role, stage, kind string) {
	t.Helper()
	processortest.Send(t, topo, &schemas.Request{RequestID: "good", Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})
	aggs := processortest.Aggregates(t, topo, f, 1, 2*time.Minute)
	if a := aggs["good"]; a == nil || a.Outcome != schemas.OutcomeComplete {
		t.Fatalf("good request: aggregate %+v, want complete", a)
	}
	dead := processortest.Records(t, topo, f.Topics.DeadLetter, 1, time.Minute)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	d := dead[0]
	sum := sha256.Sum256(original)
	if got := kafka.Header(d, schemas.HeaderOriginalSize); got != strconv.Itoa(len(original)) {
		t.Errorf("dead letter: %s %q, want %d", schemas.HeaderOriginalSize, got, len(original))
	}
	if got := kafka.Header(d, schemas.HeaderOriginalSHA256); got != hex.EncodeToString(sum[:]) {
		t.Errorf("dead letter: %s %q, want the original's %x", schemas.HeaderOriginalSHA256, got, sum)
	}
	if len(d.Value) >= len(original) || len(d.Value) < len(original)-20000 || !bytes.HasPrefix(original, d.Value) {
		t.Errorf("dead letter value: %d bytes, want a prefix of the original's %d bytes cut just enough to fit", len(d.Value), len(original))
	}
	if got := headers(d, schemas.HeaderStage, schemas.HeaderReasonKind); got != stage+" "+kind {
		t.Errorf("dead letter: stage and kind %q, want %s %s", got, stage, kind)
	}
	if n := rw.count(role, f.Topics.DeadLetter, kafka.RewriteTruncated); n != 1 {
		t.Errorf("hooks told %d dead letters truncated, want 1", n)
	}
}

// oneTarget is a flow of one partition and one target, a.
const oneTarget = `
partitions: 1
timeout: 20s
targets: [{name: a}]
`

// startRoles creates the topics of a flow (flowBody, see
// processortest.Topology) and runs every role on them with opts, until
// the test ends; the hooks count the records the roles rewrite.
func startRoles(t *testing.T, flowBody string, opts ...kafka.RoleOpt) (*topology.Topology, *topology.Flow, *rewrites) {
	t.Helper()
	topo, f := processortest.Topology(t, processortest.Brokers(t), flowBody)
	processortest.CreateTopics(t, topo, f)
	rw := &rewrites{}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), append(opts, kafka.WithHooks(rw))...)
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	return topo, f, rw
}

// A result too large to be dead-lettered as it is (its bytes plus the
// headers exceed the producer's batch limit) is dead-lettered cut to fit,
// and the gather goes on: a good request after it still gets its
// aggregate, and no transaction aborts on it again and again.
func TestIntegrationGatherCutsDeadLetterTooLarge(t *testing.T) {
	topo, f, rw := startRoles(t, oneTarget, kafka.WithHandler("a", answer(1)))

	// Not Avro: the gather dead-letters it.
	big := append([]byte{0xC3, 0x01}, bytes.Repeat([]byte("z"), 1_000_098)...)
	sendLarge(t, topo, f.Topics.Results, []byte("big"), big)
	checkCut(t, topo, f, rw, big, kafka.RoleGather, schemas.StageGather, schemas.KindUndecodable)
}

// A request too large to be dead-lettered as it is goes to the dead-letter
// topic cut to fit, and the scatter goes on: the dead letter itself is
// never refused in turn.
func TestIntegrationScatterCutsDeadLetterTooLarge(t *testing.T) {
	topo, f, rw := startRoles(t, oneTarget, kafka.WithHandler("a", answer(1)))

	// Over limits.max_payload_bytes: dead-lettered as oversize.
	big, err := schemas.Encode(&schemas.Request{RequestID: "big", Flow: f.Name, Payload: bytes.Repeat([]byte("x"), 1_000_000), ContentType: schemas.ContentTypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	sendLarge(t, topo, f.Topics.Requests, []byte("big"), big)
	checkCut(t, topo, f, rw, big, kafka.RoleScatter, schemas.StageScatter, schemas.KindOversize)
}

// An answer within limits.max_payload_bytes whose result is larger than
// the worker's producer writes (its batch limit) becomes an ERROR result
// with the reason, and the task's offset commits: the request completes
// with the target failed, and the partition's commit goes on.
func TestIntegrationWorkerReplacesResultTooLarge(t *testing.T) {
	huge := worker.HandlerFunc(func(context.Context, *schemas.Task) ([]byte, error) {
		return []byte(`{"x":"` + strings.Repeat("y", 1_500_000) + `"}`), nil
	})
	topo, f, rw := startRoles(t, `
partitions: 1
timeout: 30s
targets: [{name: a}, {name: b}]
limits: {max_payload_bytes: 2MiB}
`, kafka.WithHandler("a", huge), kafka.WithHandler("b", answer(2)))
	processortest.Send(t, topo, &schemas.Request{RequestID: "r", Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})

	aggs := processortest.Aggregates(t, topo, f, 1, 2*time.Minute)
	a := aggs["r"]
	if a == nil || a.Outcome != schemas.OutcomeComplete || names(a.Answered) != "b" || names(a.Failed) != "a" {
		t.Fatalf("aggregate %+v, want complete with b answered and a failed", a)
	}
	if !strings.HasPrefix(a.Failed[0].Error, "answer too large to write: ") {
		t.Errorf("a's failure %q, want the reason it could not be written", a.Failed[0].Error)
	}
	if n := rw.count(kafka.RoleWorker, f.Topics.Results, kafka.RewriteErrorResult); n != 1 {
		t.Errorf("hooks told %d results replaced, want 1", n)
	}
	// The task is done: its offset commits.
	awaitTasksCommitted(t, topo, f, "a")
}

// A topic of aggregates whose max.message.bytes is lowered below an
// aggregate while the gather runs: the broker refuses the aggregate, the
// gather reads the topic's limit again and writes it as failed without
// its result, then goes on, instead of aborting on it again and again.
func TestIntegrationGatherFailsAggregateTheTopicRefuses(t *testing.T) {
	// Random, so that the producer's compression cannot bring the
	// aggregate under the topic's limit.
	noise := make([]byte, 150_000)
	_, _ = rand.Read(noise)
	h := worker.HandlerFunc(func(_ context.Context, t *schemas.Task) ([]byte, error) {
		if t.RequestID == "big" {
			return []byte(`{"x":"` + base64.StdEncoding.EncodeToString(noise) + `"}`), nil
		}
		return []byte(`{"price":1}`), nil
	})
	topo, f, rw := startRoles(t, oneTarget, kafka.WithHandler("a", h))
	// The gather has written an aggregate before the topic changes.
	processortest.Send(t, topo, &schemas.Request{RequestID: "before", Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})
	processortest.Aggregates(t, topo, f, 1, 2*time.Minute)

	lowerMaxMessageBytes(t, topo, f.Topics.Aggregated, "50000")
	processortest.Send(t, topo, &schemas.Request{RequestID: "big", Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})
	processortest.Send(t, topo, &schemas.Request{RequestID: "small", Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})

	aggs := processortest.Aggregates(t, topo, f, 3, 2*time.Minute)
	if a := aggs["big"]; a == nil || a.Outcome != schemas.OutcomeFailed || !strings.Contains(a.Reason, "exceeds what topic "+f.Topics.Aggregated+" accepts") || string(a.Result) != "null" {
		t.Errorf("big: aggregate %+v, want failed without its result, with the reason", a)
	}
	if a := aggs["small"]; a == nil || a.Outcome != schemas.OutcomeComplete {
		t.Errorf("small: aggregate %+v, want complete", a)
	}
	if n := rw.count(kafka.RoleGather, f.Topics.Aggregated, kafka.RewriteFailedAggregate); n != 1 {
		t.Errorf("hooks told %d aggregates written as failed, want 1", n)
	}
}

// A results topic whose max.message.bytes is lowered below a result while
// the worker runs: the worker's write passes its own check (the limit it
// read at the start), the broker refuses it, and the result is written
// again as an ERROR result with the reason, so that the request completes
// with the target failed and the task's offsets commit. The broker refuses
// a record batch whole: the small results that shared the large one's
// batch are written again as they are, not taken for too large.
func TestIntegrationWorkerReplacesResultTheTopicRefuses(t *testing.T) {
	noise := make([]byte, 150_000)
	_, _ = rand.Read(noise)
	// The answers of a burst of requests, the large one among them, come
	// all at once, so that their results reach the producer together
	// and share batches.
	const burst = 20
	var met sync.WaitGroup
	met.Add(2 * (burst + 1))
	meet := func(id string) {
		if id != "before" {
			met.Done()
			met.Wait()
		}
	}
	a := worker.HandlerFunc(func(_ context.Context, t *schemas.Task) ([]byte, error) {
		meet(t.RequestID)
		if t.RequestID == "big" {
			return []byte(`{"x":"` + base64.StdEncoding.EncodeToString(noise) + `"}`), nil
		}
		return []byte(`{"price":1}`), nil
	})
	b := worker.HandlerFunc(func(_ context.Context, t *schemas.Task) ([]byte, error) {
		meet(t.RequestID)
		return []byte(`{"price":2}`), nil
	})
	topo, f, rw := startRoles(t, `
partitions: 1
timeout: 30s
targets:
  - {name: a, concurrency: fixed, max_in_flight: 64}
  - {name: b, concurrency: fixed, max_in_flight: 64}
`, kafka.WithHandler("a", a), kafka.WithHandler("b", b))
	processortest.Send(t, topo, &schemas.Request{RequestID: "before", Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})
	processortest.Aggregates(t, topo, f, 1, 2*time.Minute)

	lowerMaxMessageBytes(t, topo, f.Topics.Results, "50000")
	reqs := []*schemas.Request{{RequestID: "big", Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON}}
	for i := range burst {
		reqs = append(reqs, &schemas.Request{RequestID: fmt.Sprintf("small-%d", i), Flow: f.Name, Payload: []byte(`{"q":1}`), ContentType: schemas.ContentTypeJSON})
	}
	processortest.Send(t, topo, reqs...)

	aggs := processortest.Aggregates(t, topo, f, 2+burst, 2*time.Minute)
	big := aggs["big"]
	if big == nil || big.Outcome != schemas.OutcomeComplete || names(big.Answered) != "b" || names(big.Failed) != "a" {
		t.Fatalf("big: aggregate %+v, want complete with b answered and a failed", big)
	}
	if !strings.HasPrefix(big.Failed[0].Error, "answer too large to write: ") {
		t.Errorf("big: a's failure %q, want the reason it could not be written", big.Failed[0].Error)
	}
	for i := range burst {
		id := fmt.Sprintf("small-%d", i)
		if a := aggs[id]; a == nil || a.Outcome != schemas.OutcomeComplete || names(a.Answered) != "a,b" {
			t.Errorf("%s: aggregate %+v, want complete with both answered", id, a)
		}
	}
	if n := rw.count(kafka.RoleWorker, f.Topics.Results, kafka.RewriteErrorResult); n != 1 {
		t.Errorf("hooks told %d results replaced, want 1", n)
	}
	awaitTasksCommitted(t, topo, f, "a")
}

// awaitTasksCommitted waits until the worker of target has committed every
// task of its topic's only partition. The topic ends with the marker of
// the scatter's last transaction, right after the last task, so that
// commit is the offset of the marker.
func awaitTasksCommitted(t *testing.T, topo *topology.Topology, f *topology.Flow, target string) {
	t.Helper()
	adm := processortest.Admin(t, topo)
	topic := f.Target(target).Topic
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	group := topo.Group(f, "worker."+target)
	processortest.Eventually(t, time.Minute, "the worker's commit of every task of "+target, func() bool {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		o, ok := offs.Lookup(topic, 0)
		return ok && o.Err == nil && o.At == end.Offset-1
	})
}

// lowerMaxMessageBytes sets topic's max.message.bytes to limit and waits
// until the broker describes it so.
func lowerMaxMessageBytes(t *testing.T, topo *topology.Topology, topic, limit string) {
	t.Helper()
	adm := processortest.Admin(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	processortest.SetTopicConfig(t, adm, topic, "max.message.bytes", limit)
	processortest.Eventually(t, time.Minute, "the new max.message.bytes", func() bool {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return false
		}
		rc, err := rcs.On(topic, nil)
		if err != nil {
			return false
		}
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" {
				return c.MaybeValue() == limit
			}
		}
		return false
	})
}

// A dead-letter topic deleted while the gather runs stops it, at its first
// dead letter, with one permanent error naming the topic and the fix, and
// it reports itself not ready, instead of aborting again and again.
func TestIntegrationGatherStopsOnMissingDeadLetterTopic(t *testing.T) {
	topo, f := processortest.Topology(t, processortest.Brokers(t), oneTarget)
	processortest.CreateTopics(t, topo, f)
	g, err := kafka.NewGather(topo, f, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- kafka.Supervise(ctx, g) }()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gather stopped before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("gather not ready after 2m")
	}

	adm := processortest.Admin(t, topo)
	if _, err := adm.DeleteTopics(ctx, f.Topics.DeadLetter); err != nil {
		t.Fatal(err)
	}
	processortest.Eventually(t, time.Minute, "the dead-letter topic gone", func() bool {
		d, err := adm.ListTopics(ctx, f.Topics.DeadLetter)
		return err == nil && !d.Has(f.Topics.DeadLetter)
	})
	processortest.SendRaw(t, topo, f.Topics.Results, []byte("bad"), []byte("not avro"))

	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the gather still runs 3m after a dead letter for a deleted topic")
	}
	var we *kafka.WriteError
	if !errors.As(err, &we) || !kafka.IsPermanent(err) {
		t.Fatalf("gather stopped with %v (%T), want a permanent *kafka.WriteError", err, err)
	}
	msg := err.Error()
	for _, want := range []string{"flow " + f.Name, "cannot write to topic " + f.Topics.DeadLetter, "UNKNOWN_TOPIC_OR_PARTITION", "scattergather topics create"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if st := g.Status(); st.Ready || !strings.Contains(st.Detail, f.Topics.DeadLetter) {
		t.Errorf("status %+v, want not ready, saying why", st)
	}
}
