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

// A transaction open on the offsets partition is known to hang when it is
// of an older epoch, or of the current one while the coordinator has none
// open and the role none in flight, whatever the coordinator's last
// outcome (lostOutcome then picks the marker).
func TestHangs(t *testing.T) {
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
		want        bool
	}{
		{"an older epoch: fenced", open(0), 5, coord("Empty", 5), false, true},
		{"an older epoch, whatever the coordinator says", open(0), 5, coord("Ongoing", 5), true, true},
		{"current epoch, the coordinator's last committed", open(0), 0, coord("CompleteCommit", 0), false, true},
		{"current epoch, the coordinator aborted", open(0), 0, coord("CompleteAbort", 0), false, true},
		{"current epoch, nothing open at the coordinator", open(0), 0, coord("Empty", 0), false, true},
		{"current epoch, the role's transaction in flight", open(0), 0, coord("CompleteCommit", 0), true, false},
		{"current epoch, still open at the coordinator", open(0), 0, coord("Ongoing", 0), false, false},
		{"current epoch, being committed", open(0), 0, coord("PrepareCommit", 0), false, false},
		{"coordinator unknown", open(0), 0, kadm.DescribedTransaction{}, false, false},
		{"another producer at the coordinator", open(0), 0, kadm.DescribedTransaction{ProducerID: 8, State: "CompleteCommit"}, false, false},
		{"a newer epoch than ours", open(6), 5, coord("CompleteCommit", 6), false, false},
	} {
		if got := hangs(tc.open, tc.epoch, tc.coordinator, tc.inFlight); got != tc.want {
			t.Errorf("%s: hangs = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A control record's key is a version and a type: 0 abort, 1 commit.
func TestMarkerOf(t *testing.T) {
	for _, tc := range []struct {
		key  []byte
		want settlement
	}{
		{[]byte{0, 0, 0, 0}, abort},
		{[]byte{0, 0, 0, 1}, commit},
		{[]byte{0, 0, 0, 2}, leave},
		{[]byte{0, 0}, leave},
	} {
		if got := markerOf(tc.key); got != tc.want {
			t.Errorf("markerOf(%x) = %d, want %d", tc.key, got, tc.want)
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
