package kafka_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/schemas"
)

// roleTxns records the input records of each committed transaction of one
// role.
type roleTxns struct {
	role string
	mu   sync.Mutex
	txns []int
}

func (h *roleTxns) OnTransactionTimed(_, role string, records int, _, _ time.Duration) {
	if role != h.role {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.txns = append(h.txns, records)
}

func (h *roleTxns) wait(t *testing.T, n int) []int {
	t.Helper()
	processortest.Eventually(t, time.Minute, "transactions of the "+h.role, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.txns) >= n
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.txns...)
}

// whileEnding holds a role's transaction at its end: when the client's
// first record of topic is acknowledged, before the transaction can end,
// it calls write and waits until the role's client has fetched a record
// of each of keys (so they are in the client's buffer, not yet polled).
type whileEnding struct {
	topic string
	write func()

	once    sync.Once
	mu      sync.Mutex
	want    map[string]bool
	fetched chan struct{}
	clients []*kgo.Client
}

func (h *whileEnding) OnNewClient(cl *kgo.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients = append(h.clients, cl)
}

// buffered reports whether a client of the role counts records fetched
// and not yet polled.
func (h *whileEnding) buffered() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, cl := range h.clients {
		if cl.BufferedFetchRecords() > 0 {
			return true
		}
	}
	return false
}

func newWhileEnding(topic string, keys []string, write func()) *whileEnding {
	h := &whileEnding{topic: topic, write: write, want: map[string]bool{}, fetched: make(chan struct{})}
	for _, k := range keys {
		h.want[k] = true
	}
	return h
}

func (h *whileEnding) OnProduceRecordUnbuffered(r *kgo.Record, _ error) {
	if r.Topic != h.topic {
		return
	}
	h.once.Do(func() {
		h.write()
		select {
		case <-h.fetched:
		case <-time.After(time.Minute):
			return
		}
		// franz-go calls OnFetchRecordBuffered before it counts the
		// records as buffered, and has no event for that.
		deadline := time.Now().Add(time.Minute)
		for !h.buffered() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	})
}

func (h *whileEnding) OnFetchRecordBuffered(r *kgo.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.want[string(r.Key)] {
		return
	}
	delete(h.want, string(r.Key))
	if len(h.want) == 0 {
		close(h.fetched)
	}
}

// check fails t unless the records written were fetched.
func (h *whileEnding) check(t *testing.T) {
	t.Helper()
	select {
	case <-h.fetched:
	default:
		t.Fatal("the records written while the transaction ended were not fetched while it waited")
	}
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Error(err)
	}
}

func encoded(t *testing.T, v any) []byte {
	t.Helper()
	b, err := schemas.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A request that reaches the scatter's client while its transaction ends
// rides that transaction: the scatter takes what its client has fetched
// before it ends one. Without that, the request waits for the end, and
// then for the whole of the next transaction.
func TestIntegrationScatterTakesFetchedRequestsIntoItsTransaction(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 1h
partitions: 1
targets: [{name: a}, {name: b}, {name: c}]
strategy: {type: all}
`)
	processortest.CreateTopics(t, topo, f)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(f.Topics.Requests))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	request := func(id string) *kgo.Record {
		return &kgo.Record{Key: []byte(id), Value: encoded(t, &schemas.Request{RequestID: id, Flow: f.Name, Payload: []byte(`{}`), ContentType: schemas.ContentTypeJSON})}
	}
	hold := newWhileEnding(f.Topics.Results, []string{"r2"}, func() { produce(t, cl, request("r2")) })
	txns := &roleTxns{role: kafka.RoleScatter}
	s := kafka.NewScatter(topo, f, kafka.WithInstance("s"), kafka.WithHooks(txns), kafka.WithClientOptions(kgo.WithHooks(hold)))
	stop := processortest.Start(t, s)
	defer stop()

	produce(t, cl, request("r1"))
	got := txns.wait(t, 1)
	hold.check(t)
	if got[0] != 2 {
		t.Fatalf("the scatter's first transaction carried %d requests; want 2, the second fetched while it ended", got[0])
	}
}

// The same for the gather: the records its client fetched while a
// transaction that wrote an aggregate ended are folded into it.
func TestIntegrationGatherFoldsFetchedRecordsIntoItsTransaction(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 1h
partitions: 1
targets: [{name: a}, {name: b}]
strategy: {type: all}
gather: {commit_delay: 0s}
`)
	processortest.CreateTopics(t, topo, f)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(f.Topics.Results))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	manifest := func(id string) *kgo.Record {
		m := &schemas.Manifest{RequestID: id, Flow: f.Name, Strategy: "all", MaxFailures: -1, TimeoutMs: time.Hour.Milliseconds()}
		for _, target := range []string{"a", "b"} {
			m.Tasks = append(m.Tasks, schemas.TaskRef{TaskID: id + "/" + target, Target: target, Item: -1})
		}
		return &kgo.Record{Key: []byte(id), Value: encoded(t, m)}
	}
	result := func(id, target string) *kgo.Record {
		return &kgo.Record{Key: []byte(id), Value: encoded(t, &schemas.Result{RequestID: id, Flow: f.Name, TaskID: id + "/" + target, Target: target,
			Item: -1, Status: schemas.StatusOK, Payload: []byte(`{}`), ContentType: schemas.ContentTypeJSON})}
	}
	hold := newWhileEnding(f.Topics.Aggregated, []string{"r2"}, func() { produce(t, cl, manifest("r2"), result("r2", "a"), result("r2", "b")) })
	txns := &roleTxns{role: kafka.RoleGather}
	g, err := kafka.NewGather(topo, f, t.TempDir(), kafka.WithInstance("g"), kafka.WithHooks(txns), kafka.WithClientOptions(kgo.WithHooks(hold)))
	if err != nil {
		t.Fatal(err)
	}
	stop := processortest.Start(t, g)
	defer stop()

	produce(t, cl, manifest("r1"), result("r1", "a"), result("r1", "b"))
	aggs := processortest.Aggregates(t, topo, f, 2, time.Minute)
	hold.check(t)
	for _, id := range []string{"r1", "r2"} {
		if a := aggs[id]; a == nil || a.Outcome != schemas.OutcomeComplete || len(a.Answered) != 2 {
			t.Errorf("aggregate of %s: %+v", id, a)
		}
	}
	if got := txns.wait(t, 1); got[0] != 6 {
		t.Fatalf("the gather's transactions carried %v records; want a first of 6, r2's three fetched while it ended", got)
	}
}
