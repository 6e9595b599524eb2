package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offsetsTopic is Kafka's topic of committed offsets.
const offsetsTopic = "__consumer_offsets"

// hangingCheckEvery is how often a transactional role checks that no
// transaction of its own hangs on its group's offsets partition.
const hangingCheckEvery = 10 * time.Second

// offsetsPartition returns the partition of __consumer_offsets that holds
// group's offsets, as the broker picks it: the Java hash code of the group
// id (over its UTF-16 code units), its absolute value (Kafka's Utils.abs:
// Integer.MIN_VALUE gives 0), modulo the topic's partition count. The
// absolute value is not the hash with its sign bit cleared, which Kafka
// uses to partition records: for a negative hash the two differ.
func offsetsPartition(group string, partitions int32) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	switch {
	case h == math.MinInt32:
		h = 0
	case h < 0:
		h = -h
	}
	return h % partitions
}

// A settlement is how a hanging transaction is ended: the marker to write.
type settlement int

const (
	leave  settlement = iota // not hanging, or its outcome is not known
	abort                    // write an abort marker
	commit                   // write a commit marker
)

// ownTxns is whether a transactional role has a transaction of its own
// in flight (begun, not yet ended). The roles update it around every
// transaction; settleHanging reads it, and holds it while it decides and
// writes a marker, so that no transaction begins meanwhile whose offsets
// would join the one it ends.
type ownTxns struct {
	mu       sync.Mutex
	inFlight bool
}

func (o *ownTxns) begin() { o.set(true) }

func (o *ownTxns) end() { o.set(false) }

func (o *ownTxns) set(inFlight bool) {
	o.mu.Lock()
	o.inFlight = inFlight
	o.mu.Unlock()
}

// hold keeps the role from beginning a transaction until release, and
// returns whether one is in flight. Without a record (nil), one may be.
func (o *ownTxns) hold() (inFlight bool) {
	if o == nil {
		return true
	}
	o.mu.Lock()
	return o.inFlight
}

func (o *ownTxns) release() {
	if o != nil {
		o.mu.Unlock()
	}
}

// settle decides what to do with an open transaction of this producer on
// the offsets partition, seen open at the same start offset before and
// after the coordinator's state was read:
//
//   - of an older epoch than the producer's current one: the producer's
//     InitProducerID fenced it, and the coordinator ended every
//     transaction it knew of for this id before answering, so it is one
//     the coordinator lost; it can never commit: abort;
//   - of the current epoch, while the coordinator has no transaction of
//     this id open (its last one complete, or none) and none of the role's
//     is in flight: the coordinator lost the offsets' part of one of this
//     producer's transactions, so no end of the role writes a marker here
//     any more. Abort: the role then reads those inputs again. Never
//     commit, not even when the coordinator or the client says the
//     transaction committed: a coordinator that lost a transaction
//     answers its commit as a retry of the previous one, and its outputs
//     were never committed. Committing its offsets would lose its inputs;
//     reading them again at worst repeats work the gather recognises;
//   - otherwise (the coordinator still has a transaction open or being
//     ended, or the role has one in flight): leave it.
func settle(open kadm.DescribedProducer, currentEpoch int16, coordinator kadm.DescribedTransaction, ownInFlight bool) settlement {
	switch {
	case open.ProducerEpoch < currentEpoch:
		return abort
	case open.ProducerEpoch > currentEpoch || coordinator.ProducerID != open.ProducerID || ownInFlight:
		return leave
	}
	switch coordinator.State {
	case "CompleteCommit", "CompleteAbort", "Empty":
		return abort
	}
	return leave
}

// settleHanging ends the transactions of this client's producer id that
// hang on the group's offsets partition (see settle): their pending
// offsets would keep the group's committed offsets unstable for ever, and
// the role, which waits for stable offsets, stalled. Errors are only
// logged: the role then waits as it would have. It returns how many
// transactions it ended.
func settleHanging(ctx context.Context, cl *kgo.Client, group, txnID string, own *ownTxns, log *slog.Logger) (ended int) {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return 0
	}
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopicsWithInternal(ctx, offsetsTopic)
	if err != nil {
		return 0
	}
	d, ok := topics[offsetsTopic]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return 0
	}
	p := offsetsPartition(group, int32(len(d.Partitions)))
	before := openTransactions(ctx, adm, p, id)
	if len(before) == 0 {
		return 0
	}
	inFlight := own.hold()
	defer own.release()
	var coordinator kadm.DescribedTransaction
	if described, err := adm.DescribeTransactions(ctx, txnID); err == nil {
		coordinator = described[txnID]
	}
	after := openTransactions(ctx, adm, p, id)
	for _, o := range before {
		a, still := after[o.CurrentTxnStartOffset]
		if !still || a.ProducerEpoch != o.ProducerEpoch {
			continue // ended meanwhile
		}
		s := settle(o, epoch, coordinator, inFlight)
		if s == leave {
			continue
		}
		m := kadm.TxnMarkers{ProducerID: o.ProducerID, ProducerEpoch: o.ProducerEpoch, CoordinatorEpoch: o.CoordinatorEpoch, Commit: s == commit, Topics: kadm.TopicsSet{}}
		m.Topics.Add(offsetsTopic, o.Partition)
		resp, err := adm.WriteTxnMarkers(ctx, m)
		if err == nil {
			resp.EachPartition(func(r kadm.TxnMarkersPartitionResponse) { err = errors.Join(err, r.Err) })
		}
		how := map[settlement]string{abort: "aborted", commit: "committed"}[s]
		if err != nil {
			log.Warn("could not end a transaction of this instance left open on its group's offsets", "group", group, "producer_id", o.ProducerID, "epoch", o.ProducerEpoch, "err", err)
			continue
		}
		ended++
		log.Warn("ended a transaction of this instance that its coordinator had lost on its group's offsets: the group's offsets are stable again",
			"group", group, "partition", fmt.Sprintf("%s[%d]", offsetsTopic, o.Partition), "producer_id", o.ProducerID, "epoch", o.ProducerEpoch,
			"from_offset", o.CurrentTxnStartOffset, "marker", how, "coordinator_state", coordinator.State)
	}
	return ended
}

// openTransactions returns producer id's open transactions on partition p
// of the offsets topic, by their first offset.
func openTransactions(ctx context.Context, adm *kadm.Client, p int32, id int64) map[int64]kadm.DescribedProducer {
	set := kadm.TopicsSet{}
	set.Add(offsetsTopic, p)
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		return nil
	}
	out := map[int64]kadm.DescribedProducer{}
	described.EachProducer(func(dp kadm.DescribedProducer) {
		if dp.ProducerID == id && dp.CurrentTxnStartOffset >= 0 {
			out[dp.CurrentTxnStartOffset] = dp
		}
	})
	return out
}

// watchHanging runs settleHanging every hangingCheckEvery until ctx ends or
// the client is closed: a role waiting for stable offsets inside its
// client (the scatter's group join) cannot notice a hanging transaction
// itself.
func watchHanging(ctx context.Context, cl *kgo.Client, group, txnID string, own *ownTxns, log *slog.Logger) {
	t := time.NewTicker(hangingCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-cl.Context().Done():
			return // the client is closed
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, hangingCheckEvery)
		settleHanging(cctx, cl, group, txnID, own, log)
		cancel()
	}
}
