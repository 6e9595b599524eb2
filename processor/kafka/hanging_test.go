package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The partition of __consumer_offsets is the broker's: Java's String
// hashCode, made non-negative, modulo the partition count.
func TestOffsetsPartition(t *testing.T) {
	for _, tc := range []struct {
		group      string
		partitions int32
		want       int32
	}{
		{"hello", 50, 99162322 % 50},           // "hello".hashCode() = 99162322
		{"polygenelubricants", 50, 0},          // hashCode() = Integer.MIN_VALUE: Utils.abs gives 0
		{"f-a07c6b9f.f-a07c6b9f.gather", 4, 3}, // as a broker of 4 offsets partitions placed it
		// Negative hash codes, as a broker of 4 offsets partitions placed
		// them: the absolute value, not the sign bit cleared (which gives 3).
		{"f-32400643.f-32400643.gather", 4, 1}, // hashCode() = -1269375077
		{"f-9199891d.f-9199891d.gather", 4, 1}, // hashCode() = -1810402533
		{"f-32400643.f-32400643.gather", 50, 1269375077 % 50},
		{"", 50, 0},
	} {
		if got := offsetsPartition(tc.group, tc.partitions); got != tc.want {
			t.Errorf("offsetsPartition(%q, %d) = %d, want %d", tc.group, tc.partitions, got, tc.want)
		}
	}
}

// A transaction open on the offsets partition is ended only when it can
// be known to hang, and only ever aborted: of an older epoch; of the
// current one, while the coordinator has none open and the role none in
// flight, whatever the coordinator's last outcome.
func TestSettle(t *testing.T) {
	open := func(epoch int16) kadm.DescribedProducer {
		return kadm.DescribedProducer{ProducerID: 7, ProducerEpoch: epoch, CurrentTxnStartOffset: 100}
	}
	coord := func(state string, epoch int16) kadm.DescribedTransaction {
		return kadm.DescribedTransaction{ProducerID: 7, ProducerEpoch: epoch, State: state}
	}
	for _, tc := range []struct {
		name        string
		open        kadm.DescribedProducer
		epoch       int16
		coordinator kadm.DescribedTransaction
		inFlight    bool
		want        settlement
	}{
		{"an older epoch: fenced, never commits", open(0), 5, coord("Empty", 5), false, abort},
		{"an older epoch, whatever the coordinator says", open(0), 5, coord("Ongoing", 5), true, abort},
		{"current epoch, the coordinator's last committed: lost, never committed", open(0), 0, coord("CompleteCommit", 0), false, abort},
		{"current epoch, the coordinator aborted", open(0), 0, coord("CompleteAbort", 0), false, abort},
		{"current epoch, nothing open at the coordinator", open(0), 0, coord("Empty", 0), false, abort},
		{"current epoch, the role's transaction in flight", open(0), 0, coord("CompleteCommit", 0), true, leave},
		{"current epoch, still open at the coordinator", open(0), 0, coord("Ongoing", 0), false, leave},
		{"current epoch, being committed", open(0), 0, coord("PrepareCommit", 0), false, leave},
		{"coordinator unknown", open(0), 0, kadm.DescribedTransaction{}, false, leave},
		{"another producer at the coordinator", open(0), 0, kadm.DescribedTransaction{ProducerID: 8, State: "CompleteCommit"}, false, leave},
		{"a newer epoch than ours", open(6), 5, coord("CompleteCommit", 6), false, leave},
	} {
		if got := settle(tc.open, tc.epoch, tc.coordinator, tc.inFlight); got != tc.want {
			t.Errorf("%s: settle = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// While settleHanging holds the record, the role cannot begin a
// transaction; it begins once released.
func TestOwnTxnsHoldKeepsATransactionFromBeginning(t *testing.T) {
	o := &ownTxns{}
	if o.hold() {
		t.Fatal("a fresh record has a transaction in flight")
	}
	begun := make(chan struct{})
	go func() {
		o.begin()
		close(begun)
	}()
	// begin blocks on the held lock: it cannot have set inFlight.
	if o.inFlight {
		t.Error("a transaction began while held")
	}
	o.release()
	<-begun
	if !o.hold() {
		t.Error("no transaction in flight after begin")
	}
	o.release()
}

// A transaction is troubled when the client lost a broker connection
// after it began, and only then.
func TestOwnTxnsTroubled(t *testing.T) {
	o := &ownTxns{}
	o.OnBrokerDisconnect(kgo.BrokerMetadata{}, nil)
	o.begin()
	if o.troubled() {
		t.Error("troubled by a disconnection before the transaction began")
	}
	o.OnBrokerDisconnect(kgo.BrokerMetadata{}, nil)
	o.end()
	if !o.troubled() {
		t.Error("not troubled by a disconnection during the transaction")
	}
	o.begin()
	if o.troubled() {
		t.Error("the next transaction is troubled by the last one's disconnection")
	}
}
