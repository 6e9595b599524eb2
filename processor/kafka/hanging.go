package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
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
//
// It also counts the client's broker disconnections (a kgo hook): a
// transaction that saw one may have been lost by a restarted coordinator,
// which answers its commit as a retry of the previous one (see
// checkCommitted).
type ownTxns struct {
	mu       sync.Mutex
	inFlight bool
	// disconnects counts the client's broker disconnections; atBegin is
	// the count when the transaction in flight, or the last one, began.
	disconnects, atBegin atomic.Int64
}

func (o *ownTxns) begin() {
	o.atBegin.Store(o.disconnects.Load())
	o.set(true)
}

func (o *ownTxns) end() { o.set(false) }

func (o *ownTxns) set(inFlight bool) {
	o.mu.Lock()
	o.inFlight = inFlight
	o.mu.Unlock()
}

// OnBrokerDisconnect implements kgo.HookBrokerDisconnect.
func (o *ownTxns) OnBrokerDisconnect(kgo.BrokerMetadata, net.Conn) { o.disconnects.Add(1) }

// troubled reports whether the client lost a connection to a broker since
// the last transaction began.
func (o *ownTxns) troubled() bool { return o.disconnects.Load() != o.atBegin.Load() }

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

// checkCommittedFor bounds checkCommitted; past it, the commit stands.
const checkCommittedFor = 10 * time.Second

// errTransactionLost is the error of a transaction whose commit the client
// saw succeed but whose coordinator did not know it.
var errTransactionLost = errors.New("the transaction was lost by its coordinator (a broker restarted): its outputs were not committed and are aborted; its inputs are read again")

// checkCommitted checks, after a commit that the client saw succeed while
// a broker connection was lost, that the transaction's outputs are not
// left open: a coordinator that came back from a restart without the
// transaction answers its EndTxn as a retry of the previous commit and
// writes no marker, so the outputs and the offsets stay open, and would
// share the fate of the producer's next transaction on their partitions.
// The outputs are the partitions of topics (and the group's offsets). If
// the transaction is open on any of them while the coordinator has none
// open, checkCommitted aborts it on every one of them and returns
// errTransactionLost: the role must restart, and read the inputs again.
// Errors reading the state are logged, and the commit stands.
func checkCommitted(ctx context.Context, cl *kgo.Client, group, txnID string, topics []string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, checkCommittedFor)
	defer cancel()
	id, _, err := cl.ProducerID(ctx)
	if err != nil {
		return nil
	}
	adm := kadm.NewClient(cl)
	meta, err := adm.ListTopicsWithInternal(ctx, append([]string{offsetsTopic}, topics...)...)
	if err != nil {
		log.Warn("could not check that a transaction committed", "err", err)
		return nil
	}
	set := kadm.TopicsSet{}
	for _, t := range topics {
		for p := range meta[t].Partitions {
			set.Add(t, p)
		}
	}
	if d := meta[offsetsTopic]; d.Err == nil && len(d.Partitions) > 0 {
		set.Add(offsetsTopic, offsetsPartition(group, int32(len(d.Partitions))))
	}
	open := func() ([]kadm.DescribedProducer, error) {
		described, err := adm.DescribeProducers(ctx, set)
		if err != nil {
			return nil, err
		}
		var out []kadm.DescribedProducer
		described.EachProducer(func(dp kadm.DescribedProducer) {
			if dp.ProducerID == id && dp.CurrentTxnStartOffset >= 0 {
				out = append(out, dp)
			}
		})
		return out, nil
	}
	// A commit's markers are written after its EndTxn is answered: wait
	// until the coordinator has none open, then look.
	for {
		found, err := open()
		if err != nil {
			log.Warn("could not check that a transaction committed", "err", err)
			return nil
		}
		if len(found) == 0 {
			return nil
		}
		described, err := adm.DescribeTransactions(ctx, txnID)
		if err != nil {
			log.Warn("could not check that a transaction committed", "err", err)
			return nil
		}
		switch described[txnID].State {
		case "CompleteCommit", "CompleteAbort", "Empty":
			after, err := open()
			if err != nil {
				log.Warn("could not check that a transaction committed", "err", err)
				return nil
			}
			if len(after) == 0 {
				return nil
			}
			for _, o := range after {
				m := kadm.TxnMarkers{ProducerID: o.ProducerID, ProducerEpoch: o.ProducerEpoch, CoordinatorEpoch: o.CoordinatorEpoch, Topics: kadm.TopicsSet{}}
				m.Topics.Add(o.Topic, o.Partition)
				resp, err := adm.WriteTxnMarkers(ctx, m)
				if err == nil {
					resp.EachPartition(func(r kadm.TxnMarkersPartitionResponse) { err = errors.Join(err, r.Err) })
				}
				if err != nil {
					return fmt.Errorf("%w; aborting it on %s[%d] failed: %v", errTransactionLost, o.Topic, o.Partition, err)
				}
			}
			log.Warn("a transaction the client saw commit was lost by its coordinator: aborted it on the partitions where it was left open; the inputs are read again",
				"producer_id", id, "partitions", len(after), "coordinator_state", described[txnID].State)
			return errTransactionLost
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}
