package kafka_test

import (
	"context"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
)

// TestIntegrationOffsetsPartitionIsTheBrokers: a role that finds its
// group's committed offsets unstable looks for a transaction of its own
// left open on the group's partition of __consumer_offsets, and ends it
// (settleHanging). It must look where the broker put the offsets. The test
// opens a transaction with an offset commit for groups whose Java hash
// codes are negative, where the broker's partition (the hash's absolute
// value modulo the partition count) and the hash with its sign bit
// cleared differ, and for groups with positive ones, and asks the broker
// which partition holds each open transaction.
func TestIntegrationOffsetsPartitionIsTheBrokers(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, "timeout: 2s\ntargets: [{name: a}]\nstrategy: {type: all}\n")
	processortest.CreateTopics(t, topo, f)
	adm := processortest.Admin(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	meta, err := adm.ListTopicsWithInternal(ctx, "__consumer_offsets", f.Topics.Results)
	if err != nil || meta["__consumer_offsets"].Err != nil {
		t.Fatalf("__consumer_offsets: %v %v", err, meta["__consumer_offsets"].Err)
	}
	n := int32(len(meta["__consumer_offsets"].Partitions))
	var groups []string
	negative, positive := 0, 0
	for len(groups) < 6 {
		g := processortest.Unique("offsets")
		switch h := javaHash(g); {
		// (With one or two partitions the two never differ.)
		case h < 0 && h != -1<<31 && (n <= 2 || (-h)%n != (h&0x7fffffff)%n) && negative < 4:
			negative++
		case h >= 0 && positive < 2:
			positive++
		default:
			continue
		}
		groups = append(groups, g)
	}
	for _, g := range groups {
		got := brokersOffsetsPartition(ctx, t, adm, brokers, g, f.Topics.Results, meta[f.Topics.Results].ID, n)
		if want := kafka.OffsetsPartition(g, n); got != want {
			t.Errorf("group %s (hash code %d): the broker keeps its offsets on __consumer_offsets[%d], offsetsPartition says %d", g, javaHash(g), got, want)
		}
	}
}

// brokersOffsetsPartition opens a transaction that commits an offset of
// group, as the roles do (AddOffsetsToTxn, then TxnOffsetCommit v4), finds
// the partition of __consumer_offsets on which the broker holds it open,
// and aborts it.
func brokersOffsetsPartition(ctx context.Context, t *testing.T, adm *kadm.Client, brokers []string, group, topic string, topicID [16]byte, n int32) int32 {
	t.Helper()
	txnID := group + ".probe"
	v := kversion.Stable()
	v.SetMaxKeyVersion(int16(kmsg.TxnOffsetCommit), 4)
	cl, id, epoch := txnClient(ctx, t, brokers, kgo.TransactionalID(txnID), kgo.MaxVersions(v))
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	addResp, err := add.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch, commit.Generation = txnID, group, id, epoch, -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 0
	rt.Partitions = append(rt.Partitions, rp)
	commit.Topics = append(commit.Topics, rt)
	commitResp, err := commit.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	for _, rt := range commitResp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("TxnOffsetCommit: %v", err)
			}
		}
	}
	defer func() {
		end := kmsg.NewPtrEndTxnRequest()
		end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = txnID, id, epoch, false
		if _, err := end.RequestWith(ctx, cl); err != nil {
			t.Errorf("EndTxn: %v", err)
		}
	}()
	set := kadm.TopicsSet{}
	for p := range n {
		set.Add("__consumer_offsets", p)
	}
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	found := int32(-1)
	described.EachProducer(func(dp kadm.DescribedProducer) {
		if dp.ProducerID == id && dp.CurrentTxnStartOffset >= 0 {
			found = dp.Partition
		}
	})
	if found < 0 {
		t.Fatalf("group %s: no partition of __consumer_offsets holds the open transaction of producer %d", group, id)
	}
	return found
}

// javaHash is Java's String.hashCode, over UTF-16 code units.
func javaHash(s string) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(s)) {
		h = 31*h + int32(u)
	}
	return h
}

// TestIntegrationLostOutcome: the marker that ends the part of a
// transaction a coordinator lost is the earliest marker of the producer and
// epoch on the role's outputs from the time of that part's last write (the
// transaction's own, or the next one's), and an abort without one. The
// markers here are a real broker's, written by committing and aborting
// transactions of one producer.
func TestIntegrationLostOutcome(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, "timeout: 2s\ntargets: [{name: a}]\nstrategy: {type: all}\n")
	processortest.CreateTopics(t, topo, f)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, id, epoch := txnClient(ctx, t, brokers, kgo.TransactionalID(processortest.Unique("lost")), kgo.DefaultProduceTopic(f.Topics.Aggregated))
	outputs := []string{f.Topics.Aggregated, f.Topics.Late}
	// end runs a transaction that writes one record and ends it: its
	// marker comes after the returned time.
	end := func(commit kgo.TransactionEndTry) int64 {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		before := time.Now().UnixMilli()
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
		return before
	}
	outcome := func(since int64) string {
		t.Helper()
		got, err := kafka.LostOutcome(ctx, topo, cl, outputs, id, epoch, since)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	committed := end(kgo.TryCommit)
	aborted := end(kgo.TryAbort)
	if got := outcome(committed); got != "commit" {
		t.Errorf("from before a commit's marker: %s, want commit", got)
	}
	if got := outcome(aborted); got != "abort" {
		t.Errorf("from before an abort's marker: %s, want abort", got)
	}
	if got := outcome(time.Now().Add(time.Second).UnixMilli()); got != "abort" {
		t.Errorf("with no marker since: %s, want abort", got)
	}
	if got, err := kafka.LostOutcome(ctx, topo, cl, outputs, id+1, epoch, committed); err != nil || got != "abort" {
		t.Errorf("of another producer: %s (%v), want abort", got, err)
	}
}

// txnClient is a transactional client of brokers with its producer id
// loaded, closed when the test ends.
func txnClient(ctx context.Context, t *testing.T, brokers []string, opts ...kgo.Opt) (*kgo.Client, int64, int16) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cl, id, epoch
}
