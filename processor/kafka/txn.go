package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/scattergather/scattergather/processor/topology"
)

// transactSession is what the scatter and the gather share: a consumer
// group reading topic read_committed whose outputs and offsets are written
// in one transaction, under the instance's stable transactional id and
// static membership.
type transactSession struct {
	topo  *topology.Topology
	o     *options
	role  string // client name and group suffix: "scatter" or "gather"
	group string
	topic string
	extra []kgo.Opt // the role's callbacks (assignments, revocations)
	// outputs are the topics the role writes in its transactions: where a
	// transaction its coordinator lost may be left open.
	outputs []string
}

// newTransactSession makes the session and loads its producer id before
// anything is consumed: that fences a predecessor with the same identity
// and aborts its open transaction, whose pending offsets would otherwise
// keep the group's offsets unstable (and this instance waiting) until the
// transaction timed out. A transaction of this identity whose offsets the
// coordinator lost (a broker restarted at the wrong moment) is ended too,
// at once and then every ten seconds: see settleHanging. The hangCheck
// returned is the role's to record its transactions in (own.begin, end)
// and to check a commit with (checkCommitted).
func newTransactSession(ctx context.Context, ts transactSession) (*kgo.GroupTransactSession, *hangCheck, error) {
	k := ts.topo.Kafka
	own := &ownTxns{}
	sess, err := kgo.NewGroupTransactSession(append(append(append(baseOpts(ts.topo, ts.o, ts.role), txnOpts()...),
		kgo.ConsumerGroup(ts.group),
		kgo.ConsumeTopics(ts.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.TransactionalID(ts.group+"."+ts.o.instance), // as txnID below
		kgo.TransactionTimeout(k.TransactionTimeout.D),
		kgo.InstanceID(ts.o.instance),
		kgo.SessionTimeout(k.SessionTimeout.D),
		kgo.WithHooks(own), // counts broker disconnections for checkCommitted
	), ts.extra...)...)
	if err != nil {
		return nil, nil, errorf("%s client: %w", ts.role, err)
	}
	if _, _, err := sess.Client().ProducerID(ctx); err != nil {
		sess.Close()
		return nil, nil, errorf("%s producer id: %w", ts.role, err)
	}
	h := &hangCheck{topo: ts.topo, o: ts.o, role: ts.role, cl: sess.Client(), group: ts.group, txnID: ts.group + "." + ts.o.instance,
		outputs: ts.outputs, own: own, log: ts.o.logger.With("role", ts.role)}
	settleHanging(ctx, h)
	go watchHanging(ctx, h)
	return sess, h, nil
}

// transactionContext bounds one transaction by the transaction timeout and
// lets it run to its end even when ctx ends: a shutdown commits (or
// aborts) it cleanly rather than leaving it to time out.
func transactionContext(ctx context.Context, t *topology.Topology) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), t.Kafka.TransactionTimeout.D)
}

// txnClock times one transaction for HookTransactionTimed.
type txnClock struct {
	began, ending time.Time
}

func beginTxnClock() txnClock { return txnClock{began: time.Now()} }

// end marks the moment the transaction starts to end.
func (c *txnClock) end() { c.ending = time.Now() }

// tell tells the hooks the transaction ended, with records of input.
func (c *txnClock) tell(hs hooks, flow, role string, records int) {
	now := time.Now()
	each(hs, func(h HookTransactionTimed) {
		h.OnTransactionTimed(flow, role, records, now.Sub(c.began), now.Sub(c.ending))
	})
}

// txnOpts are the options of the transactional sessions (scatter, gather).
//
// They keep the transactions on the pre-KIP-890 path (TxnOffsetCommit
// below v5, so offsets are added with AddOffsetsToTxn). On a broker with
// transaction.version 2, franz-go's newer path sends TxnOffsetCommit
// without AddOffsetsToTxn, and the broker answers CONCURRENT_TRANSACTIONS
// while the previous transaction's markers are still being written, which
// franz-go treats as a reason to abort: under steady load a third of the
// gather's transactions aborted and were redone. On the older path the
// same condition is answered on AddOffsetsToTxn, which franz-go retries
// with backoff. Brokers keep serving this path (KIP-890 is backward
// compatible); the guarantees are the same.
func txnOpts() []kgo.Opt {
	v := kversion.Stable()
	v.SetMaxKeyVersion(int16(kmsg.TxnOffsetCommit), 4)
	return []kgo.Opt{kgo.MaxVersions(v), kgo.ConcurrentTransactionsBackoff(2 * time.Millisecond)}
}
