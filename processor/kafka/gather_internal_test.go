package kafka

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// TestAssignmentsRecheckTheCommittedPosition: an assignment of a partition
// this instance still has a fold of (a revocation it did not see) starts
// again from the committed position, and a partition revoked since a poll
// is not prepared for its records.
func TestAssignmentsRecheckTheCommittedPosition(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topo, err := topology.Parse("t.yaml", []byte("kafka: {brokers: ["+c.ListenAddrs()[0]+"]}\nflows:\n  - {name: f, timeout: 2s, partitions: 2, targets: [{name: a}]}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := topo.Flows[0]
	dir := t.TempDir()
	g, err2 := NewGather(topo, f, dir, WithLogger(slog.New(slog.DiscardHandler)))
	if err2 != nil {
		t.Fatal(err2)
	}
	if g.db, err = store.Open(filepath.Join(dir, f.Name)); err != nil {
		t.Fatal(err)
	}
	defer g.db.Close()
	cl, err := kgo.NewClient(ClientOptions(topo, "test")...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	g.cl = cl
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, f.Topics.Results); err != nil {
		t.Fatal(err)
	}
	event := func(assigned bool, ps ...int32) {
		t.Helper()
		g.mu.Lock()
		g.events = append(g.events, partEvent{assigned: assigned, partitions: ps})
		g.mu.Unlock()
		if _, err := g.handleEvents(ctx, adm); err != nil {
			t.Fatal(err)
		}
	}

	event(true, 0)
	gp := g.parts[0]
	if gp == nil || gp.fold.Next() != 0 {
		t.Fatalf("partition 0 not prepared at offset 0")
	}
	// The fold moves on (records folded, not committed to Kafka).
	tick, _ := schemas.Encode(&schemas.Tick{SentMs: 1000})
	for off := range int64(5) {
		if err := gp.fold.Apply(gather.Record{Offset: off, TimeMs: 1000, Value: tick}, func(gather.Output) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := gp.fold.Commit(); err != nil {
		t.Fatal(err)
	}
	// Assigned again without a revocation in between: the stale fold at 5
	// must not be resumed; nothing is committed in the group, so it starts
	// at 0 again.
	event(true, 0)
	if gp := g.parts[0]; gp == nil || gp.fold.Next() != 0 {
		t.Errorf("re-assigned partition 0 resumed a stale fold at %d, want the committed position 0", g.parts[0].fold.Next())
	}
	// Revoked after a poll that had records of it: not prepared again.
	event(false, 0)
	if err := g.prepareBusy(ctx, adm, map[int32]bool{0: true}); err != nil {
		t.Fatal(err)
	}
	if g.parts[0] != nil {
		t.Error("a revoked partition was prepared for the records of an earlier poll")
	}
}
