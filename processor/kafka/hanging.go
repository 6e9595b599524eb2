package kafka

import (
	"context"
	"encoding/binary"
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

	"github.com/scattergather/scattergather/processor/topology"
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

// String names the marker a settlement writes, for logs.
func (s settlement) String() string {
	switch s {
	case abort:
		return "aborted"
	case commit:
		return "committed"
	}
	return "left"
}

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
// returns whether one is in flight.
func (o *ownTxns) hold() (inFlight bool) {
	o.mu.Lock()
	return o.inFlight
}

func (o *ownTxns) release() { o.mu.Unlock() }

// hangs decides whether an open transaction of this producer on the
// offsets partition, seen open at the same start offset before and after
// the coordinator's state was read, can be known to hang, so that this
// role must end it:
//
//   - of an older epoch than the producer's current one: the producer's
//     InitProducerID fenced it, and the coordinator ended every
//     transaction it still knew of for this id before answering: yes;
//   - of the current epoch, while the coordinator has no transaction of
//     this id open (its last one complete, or none) and none of the role's
//     is in flight: the coordinator lost the offsets' part of one of this
//     producer's transactions, so no end of the role writes a marker here
//     any more: yes;
//   - otherwise (the coordinator still has a transaction open or being
//     ended, or the role has one in flight): no, it will be ended.
//
// Which marker ends it is lostOutcome's to say.
func hangs(open kadm.DescribedProducer, currentEpoch int16, coordinator kadm.DescribedTransaction, ownInFlight bool) bool {
	switch {
	case open.ProducerEpoch < currentEpoch:
		return true
	case open.ProducerEpoch > currentEpoch || coordinator.ProducerID != open.ProducerID || ownInFlight:
		return false
	}
	switch coordinator.State {
	case "CompleteCommit", "CompleteAbort", "Empty":
		return true
	}
	return false
}

// markerOf returns the settlement a transaction marker (a control record
// key: version, then type 0 abort or 1 commit) writes; leave when it is
// not one.
func markerOf(key []byte) settlement {
	if len(key) < 4 {
		return leave
	}
	switch binary.BigEndian.Uint16(key[2:4]) {
	case 0:
		return abort
	case 1:
		return commit
	}
	return leave
}

// markerScan is how many offsets at the end of an output partition
// lostOutcome reads when none has a timestamp near the time it looks from.
const markerScan = 10_000

// lostOutcome returns how to end the part of a transaction of producer id
// at epoch left open by a lost coordinator, from the role's outputs: the
// earliest marker of that producer, of that epoch or a later one, on the
// outputs at or after since (the time of the open part's last write). A
// marker ends whatever the producer has open on its partition, and with
// transaction version 2 the broker writes it with the epoch bumped. The
// coordinator writes a transaction's markers after its offsets, so that
// marker is the transaction's own outcome (it committed, and only the
// offsets' marker was lost) or, when it wrote none, that of the
// producer's next transaction, which ended the records left open on those
// partitions with its own. Without one, abort (the caller aborts the
// outputs left open too).
func lostOutcome(ctx context.Context, h *hangCheck, id int64, epoch int16, since int64) (settlement, error) {
	ctx, cancel := context.WithTimeout(ctx, checkCommittedFor)
	defer cancel()
	adm := kadm.NewClient(h.cl)
	// Records carry their producers' clocks and markers the broker's, and
	// a lookup by time finds no marker: start a minute before since, or,
	// when no record is that recent, at the last markerScan offsets.
	starts, err := adm.ListOffsetsAfterMilli(ctx, since-time.Minute.Milliseconds(), h.outputs...)
	if err != nil {
		return leave, err
	}
	ends, err := adm.ListEndOffsets(ctx, h.outputs...)
	if err != nil {
		return leave, err
	}
	firsts, err := adm.ListStartOffsets(ctx, h.outputs...)
	if err != nil {
		return leave, err
	}
	from := map[string]map[int32]kgo.Offset{}
	left := 0
	ends.Each(func(end kadm.ListedOffset) {
		if end.Err != nil {
			return
		}
		at := end.Offset - markerScan
		if o, ok := starts.Lookup(end.Topic, end.Partition); ok && o.Err == nil && o.Offset >= 0 {
			at = o.Offset
		}
		if first, ok := firsts.Lookup(end.Topic, end.Partition); ok && first.Err == nil {
			at = max(at, first.Offset)
		}
		if at >= end.Offset {
			return
		}
		if from[end.Topic] == nil {
			from[end.Topic] = map[int32]kgo.Offset{}
		}
		from[end.Topic][end.Partition] = kgo.NewOffset().At(max(at, 0))
		left++
	})
	if left == 0 {
		return abort, nil
	}
	rd, err := kgo.NewClient(append(baseOpts(h.topo, h.o, h.role+"-markers"),
		kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return leave, err
	}
	defer rd.Close()
	found, foundAt := leave, int64(0)
	done := map[string]map[int32]bool{}
	for left > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			return leave, ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			if done[r.Topic][r.Partition] {
				return
			}
			if r.Attrs.IsControl() && r.ProducerID == id && r.ProducerEpoch >= epoch && r.Timestamp.UnixMilli() >= since {
				if m := markerOf(r.Key); m != leave && (found == leave || r.Timestamp.UnixMilli() < foundAt) {
					found, foundAt = m, r.Timestamp.UnixMilli()
				}
			}
			if end, _ := ends.Lookup(r.Topic, r.Partition); r.Offset+1 >= end.Offset {
				if done[r.Topic] == nil {
					done[r.Topic] = map[int32]bool{}
				}
				done[r.Topic][r.Partition] = true
				left--
			}
		})
	}
	if found == leave {
		return abort, nil
	}
	return found, nil
}

// hangCheck is what a transactional role needs to find and end its own
// transactions that a coordinator lost: its client (set once the session
// is made), identity, outputs and record of its transactions.
type hangCheck struct {
	topo    *topology.Topology
	o       *options
	role    string
	cl      *kgo.Client
	group   string
	txnID   string
	outputs []string // the topics the role writes in its transactions
	own     *ownTxns
	log     *slog.Logger
}

// settleHanging ends the transactions of this client's producer id that
// hang on the group's offsets partition (see hangs), with the marker
// lostOutcome finds, and aborts the outputs a transaction it aborts left
// open: their pending offsets would keep the group's committed offsets
// unstable for ever, and the role, which waits for stable offsets,
// stalled. Errors are only logged: the role then waits as it would have.
// It returns how many transactions it ended.
func settleHanging(ctx context.Context, h *hangCheck) (ended int) {
	id, epoch, err := h.cl.ProducerID(ctx)
	if err != nil {
		return 0
	}
	adm := kadm.NewClient(h.cl)
	offsets := []string{offsetsTopic}
	before, err := openOn(ctx, adm, offsets, id, h.group)
	if err != nil || len(before) == 0 {
		return 0
	}
	inFlight := h.own.hold()
	defer h.own.release()
	var coordinator kadm.DescribedTransaction
	if described, err := adm.DescribeTransactions(ctx, h.txnID); err == nil {
		coordinator = described[h.txnID]
	}
	open, err := openOn(ctx, adm, offsets, id, h.group)
	if err != nil {
		return 0
	}
	after := map[int64]kadm.DescribedProducer{} // by first offset
	for _, a := range open {
		after[a.CurrentTxnStartOffset] = a
	}
	for _, o := range before {
		a, still := after[o.CurrentTxnStartOffset]
		if !still || a.ProducerEpoch != o.ProducerEpoch || !hangs(o, epoch, coordinator, inFlight) {
			continue // ended meanwhile, or not known to hang
		}
		// The outputs first: until the offsets' part is ended, a failure
		// here is tried again at the next check.
		s, err := lostOutcome(ctx, h, o.ProducerID, o.ProducerEpoch, a.LastTimestamp)
		if err == nil && s == abort {
			err = abortOutputs(ctx, adm, h.outputs, o.ProducerID, o.ProducerEpoch)
		}
		if err == nil {
			err = endOpen(ctx, adm, []kadm.DescribedProducer{a}, s)
		}
		if err != nil {
			h.log.Warn("could not end a transaction of this instance left open on its group's offsets", "group", h.group, "producer_id", o.ProducerID, "epoch", o.ProducerEpoch, "err", err)
			continue
		}
		ended++
		h.log.Warn("ended a transaction of this instance that its coordinator had lost on its group's offsets: the group's offsets are stable again",
			"group", h.group, "partition", fmt.Sprintf("%s[%d]", offsetsTopic, o.Partition), "producer_id", o.ProducerID, "epoch", o.ProducerEpoch,
			"from_offset", o.CurrentTxnStartOffset, "marker", s.String(), "coordinator_state", coordinator.State)
	}
	return ended
}

// endOpen writes marker s on each open part of a transaction, the one on
// the group's offsets last: should one fail, the offsets stay unstable and
// the transaction is found again.
func endOpen(ctx context.Context, adm *kadm.Client, open []kadm.DescribedProducer, s settlement) error {
	for _, offsetsLast := range []bool{false, true} {
		for _, o := range open {
			if (o.Topic == offsetsTopic) != offsetsLast {
				continue
			}
			m := kadm.TxnMarkers{ProducerID: o.ProducerID, ProducerEpoch: o.ProducerEpoch, CoordinatorEpoch: o.CoordinatorEpoch, Commit: s == commit, Topics: kadm.TopicsSet{}}
			m.Topics.Add(o.Topic, o.Partition)
			resp, err := adm.WriteTxnMarkers(ctx, m)
			if err == nil {
				resp.EachPartition(func(r kadm.TxnMarkersPartitionResponse) { err = errors.Join(err, r.Err) })
			}
			if err != nil {
				return fmt.Errorf("end the transaction on %s[%d]: %w", o.Topic, o.Partition, err)
			}
		}
	}
	return nil
}

// abortOutputs aborts what producer id at epoch left open on the
// partitions of topics.
func abortOutputs(ctx context.Context, adm *kadm.Client, topics []string, id int64, epoch int16) error {
	open, err := openOn(ctx, adm, topics, id, "")
	if err != nil {
		return err
	}
	var mine []kadm.DescribedProducer
	for _, o := range open {
		if o.ProducerEpoch == epoch {
			mine = append(mine, o)
		}
	}
	return endOpen(ctx, adm, mine, abort)
}

// openOn returns producer id's open transactions on the partitions of
// topics; of __consumer_offsets, on group's partition only.
func openOn(ctx context.Context, adm *kadm.Client, topics []string, id int64, group string) ([]kadm.DescribedProducer, error) {
	meta, err := adm.ListTopicsWithInternal(ctx, topics...)
	if err != nil {
		return nil, err
	}
	set := kadm.TopicsSet{}
	for _, t := range topics {
		if t == offsetsTopic {
			if n := len(meta[t].Partitions); n > 0 {
				set.Add(t, offsetsPartition(group, int32(n)))
			}
			continue
		}
		for p := range meta[t].Partitions {
			set.Add(t, p)
		}
	}
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

// watchHanging runs settleHanging every hangingCheckEvery until ctx ends or
// the client is closed: a role waiting for stable offsets inside its
// client (the scatter's group join) cannot notice a hanging transaction
// itself.
func watchHanging(ctx context.Context, h *hangCheck) {
	t := time.NewTicker(hangingCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.cl.Context().Done():
			return // the client is closed
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, hangingCheckEvery)
		settleHanging(cctx, h)
		cancel()
	}
}

// checkCommittedFor bounds checkCommitted (past it, the commit stands) and
// lostOutcome's reading of the outputs.
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
// Once the coordinator has no transaction open, any part of this
// producer's still open on the outputs or the group's offsets is ended as
// lostOutcome says; when that is an abort, checkCommitted returns
// errTransactionLost: the role must restart, and read the inputs again.
// Errors reading the state are logged, and the commit stands.
func checkCommitted(ctx context.Context, h *hangCheck) error {
	ctx, cancel := context.WithTimeout(ctx, checkCommittedFor)
	defer cancel()
	id, _, err := h.cl.ProducerID(ctx)
	if err != nil {
		return nil
	}
	adm := kadm.NewClient(h.cl)
	topics := append([]string{offsetsTopic}, h.outputs...)
	warn := func(err error) error {
		h.log.Warn("could not check that a transaction committed", "err", err)
		return nil
	}
	// A commit's markers are written after its EndTxn is answered: wait
	// until the coordinator has none open, then look.
	for {
		found, err := openOn(ctx, adm, topics, id, h.group)
		if err != nil {
			return warn(err)
		}
		if len(found) == 0 {
			return nil
		}
		described, err := adm.DescribeTransactions(ctx, h.txnID)
		if err != nil {
			return warn(err)
		}
		state := described[h.txnID].State
		switch state {
		case "CompleteCommit", "CompleteAbort", "Empty":
			after, err := openOn(ctx, adm, topics, id, h.group)
			if err != nil {
				return warn(err)
			}
			if len(after) == 0 {
				return nil
			}
			since := after[0].LastTimestamp
			for _, o := range after {
				since = min(since, o.LastTimestamp)
			}
			s, err := lostOutcome(ctx, h, id, after[0].ProducerEpoch, since)
			if err != nil {
				return warn(err)
			}
			if err := endOpen(ctx, adm, after, s); err != nil {
				return fmt.Errorf("%w; %v", errTransactionLost, err)
			}
			h.log.Warn("a transaction the client saw commit was lost by its coordinator: ended it where it was left open",
				"producer_id", id, "partitions", len(after), "marker", s.String(), "coordinator_state", state)
			if s == abort {
				return errTransactionLost
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}
