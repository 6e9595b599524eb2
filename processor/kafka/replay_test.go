package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// mixed answers some requests, fails some and hangs on others, so that a
// run has every kind of completion: by answers, by a failure, and by the
// deadline (through ticks) with a late result afterwards.
func mixed() worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, t *schemas.Task) ([]byte, error) {
		var n int
		fmt.Sscanf(t.RequestID, "req-%d", &n)
		switch n % 3 {
		case 0:
			<-ctx.Done()
			return nil, context.Cause(ctx)
		case 1:
			return nil, errors.New("no fare")
		}
		return fmt.Appendf(nil, `{"price": %d}`, 50+n), nil
	})
}

// TestIntegrationReplayIsByteIdentical runs a flow, replays its gather
// stage from the start and compares: every aggregate comes again with the
// same bytes and the same timestamp.
func TestIntegrationReplayIsByteIdentical(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 2s
targets: [{name: a}, {name: b}, {name: c}]
consolidate: {type: min, field: price}
gather: {tick_interval: 100ms}
worker: {deadline_grace: 300ms}
`)
	processortest.CreateTopics(t, topo, f)
	startGather := startWithoutGather(t, topo, f, kafka.WithHandler("a", answer(100)), kafka.WithHandler("b", answer(90)), kafka.WithHandler("c", mixed()))
	dir := t.TempDir()
	_, stop1 := startGather("g", dir)

	const n = 12
	reqs := requests(f.Name, n)
	for _, r := range reqs {
		r.Attributes = schemas.AttributesOf(map[string]string{"tenant": "t1", "trace": r.RequestID, "zone": "eu"})
	}
	processortest.Send(t, topo, reqs...)
	first := processortest.Records(t, topo, f.Topics.Aggregated, n, time.Minute)
	outcomes := map[schemas.Outcome]int{}
	for _, r := range first {
		var a schemas.Aggregate
		if err := schemas.DecodeInto(r.Value, &a); err != nil {
			t.Fatal(err)
		}
		outcomes[a.Outcome]++
	}
	if outcomes[schemas.OutcomeTimeout] != n/3 || outcomes[schemas.OutcomeComplete] != n-n/3 {
		t.Fatalf("first run outcomes %v, want %d timeout and %d complete", outcomes, n/3, n-n/3)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := admin.PlanReplay(ctx, topo, f, kafka.RoleGather, "earliest")
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Apply(ctx); !errors.Is(err, admin.ErrLiveMembers) {
		t.Fatalf("replay while the gather runs: %v, want ErrLiveMembers", err)
	}
	stop1()
	if err := plan.Apply(ctx, admin.RemoveStaticMembers("g")); err != nil {
		t.Fatalf("replay: %v\n%s", err, plan)
	}
	for _, p := range plan.Partitions {
		if p.To != 0 {
			t.Errorf("partition %d reset to %d, want 0", p.Partition, p.To)
		}
	}

	// The same instance on the same state directory: the new epoch in the
	// offsets' metadata makes it discard its state.
	startGather("g", dir)
	all := processortest.Records(t, topo, f.Topics.Aggregated, 2*n, time.Minute)
	if len(all) != 2*n {
		t.Fatalf("%d aggregates after the replay, want %d", len(all), 2*n)
	}
	byID := map[string]int{}
	for _, r := range first {
		byID[string(r.Key)] = 0
	}
	for i, r := range all[n:] {
		_ = i
		var orig []byte
		var origTime time.Time
		for _, o := range first {
			if bytes.Equal(o.Key, r.Key) {
				orig, origTime = o.Value, o.Timestamp
			}
		}
		if orig == nil {
			t.Errorf("replayed aggregate for unknown request %s", r.Key)
			continue
		}
		byID[string(r.Key)]++
		if !bytes.Equal(orig, r.Value) {
			t.Errorf("%s: replayed aggregate differs:\n first %x\nreplay %x", r.Key, orig, r.Value)
		}
		if !origTime.Equal(r.Timestamp) {
			t.Errorf("%s: replayed timestamp %s, first %s", r.Key, r.Timestamp, origTime)
		}
	}
	for id, c := range byID {
		if c != 1 {
			t.Errorf("%s replayed %d times, want once", id, c)
		}
	}
}

// TestIntegrationReplayWaitsForPendingTransactions: a stopped instance's
// transaction that already sent its offsets would land after a replay's
// reset and undo it; the replay waits until no such offsets are pending.
func TestIntegrationReplayWaitsForPendingTransactions(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 2s
partitions: 1
targets: [{name: a}]
`)
	processortest.CreateTopics(t, topo, f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	group := topo.Group(f, kafka.RoleGather)

	// A transaction that commits offset 7 of the results topic for the
	// gather's group, left open as by an instance killed after sending it.
	txnID := processortest.Unique("killed")
	cl, err := kgo.NewClient(append(kafka.ClientOptions(topo, "test"),
		kgo.TransactionalID(txnID), kgo.TransactionTimeout(time.Minute), kgo.MaxVersions(txnOffsetCommitV4()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: f.Topics.Aggregated, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	if resp, err := add.RequestWith(ctx, cl); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("add offsets to transaction: %v (code %d)", err, resp.ErrorCode)
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch, commit.Generation = txnID, group, id, epoch, -1
	ct := kmsg.NewTxnOffsetCommitRequestTopic()
	ct.Topic = f.Topics.Results
	cp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	cp.Partition, cp.Offset = 0, 7
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	cresp, err := commit.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range cresp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("transactional offset commit: %v", err)
			}
		}
	}

	plan, err := admin.PlanReplay(ctx, topo, f, kafka.RoleGather, "earliest")
	if err == nil {
		// While the transaction holds offsets, Apply must not reset: the
		// transaction's commit would land after it.
		short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
		err = plan.Apply(short)
		cancelShort()
	}
	if err == nil {
		t.Error("the replay reset the offsets while a transaction held offsets of the group: its commit undoes the reset")
	} else if !strings.Contains(err.Error(), "a transaction still holds offsets") {
		t.Errorf("replay while a transaction holds offsets: %v", err)
	}
	// The transaction ends (committed, as by the coordinator finishing a
	// prepare-commit); a replay then holds.
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	plan, err = admin.PlanReplay(ctx, topo, f, kafka.RoleGather, "earliest")
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	got, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := got.Lookup(f.Topics.Results, 0); !ok || r.At != 0 || !strings.HasPrefix(r.Metadata, "sg") {
		t.Errorf("after the replay the gather group stands at %d (%q), want the replay's offset 0", r.At, r.Metadata)
	}
}

// txnOffsetCommitV4 keeps TxnOffsetCommit on the version that pairs with
// AddOffsetsToTxn, as the roles do.
func txnOffsetCommitV4() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(int16(kmsg.TxnOffsetCommit), 4)
	return v
}
