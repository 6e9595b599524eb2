package kafka

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
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
// be known to hang: of an older epoch, aborted; of the current one, while
// the coordinator has none open, with the outcome of the instance's own
// last transaction once none is in flight, never the coordinator's.
func TestSettle(t *testing.T) {
	open := func(epoch int16) kadm.DescribedProducer {
		return kadm.DescribedProducer{ProducerID: 7, ProducerEpoch: epoch, CurrentTxnStartOffset: 100}
	}
	coord := func(state string, epoch int16) kadm.DescribedTransaction {
		return kadm.DescribedTransaction{ProducerID: 7, ProducerEpoch: epoch, State: state}
	}
	ended := func(committed bool) *ownTxns {
		o := &ownTxns{}
		o.begin()
		o.end(committed, nil)
		return o
	}
	inFlight := ended(true)
	inFlight.begin()
	failed := &ownTxns{}
	failed.begin()
	failed.end(true, errors.New("broker gone"))
	for _, tc := range []struct {
		name        string
		open        kadm.DescribedProducer
		epoch       int16
		coordinator kadm.DescribedTransaction
		own         *ownTxns
		want        settlement
	}{
		{"an older epoch: fenced, never commits", open(0), 5, coord("Empty", 5), nil, abort},
		{"an older epoch, whatever the coordinator says", open(0), 5, coord("Ongoing", 5), ended(true), abort},
		{"current epoch, ours committed", open(0), 0, coord("CompleteCommit", 0), ended(true), commit},
		{"current epoch, ours aborted while the coordinator's last committed", open(0), 0, coord("CompleteCommit", 0), ended(false), abort},
		{"current epoch, the coordinator aborted, ours aborted", open(0), 0, coord("CompleteAbort", 0), ended(false), abort},
		{"current epoch, nothing open at the coordinator, ours committed", open(0), 0, coord("Empty", 0), ended(true), commit},
		{"current epoch, ours in flight", open(0), 0, coord("CompleteCommit", 0), inFlight, leave},
		{"current epoch, how ours ended is unknown", open(0), 0, coord("CompleteCommit", 0), failed, leave},
		{"current epoch, none of ours ended yet", open(0), 0, coord("CompleteCommit", 0), &ownTxns{}, leave},
		{"current epoch, no record of ours", open(0), 0, coord("Empty", 0), nil, leave},
		{"current epoch, still open at the coordinator", open(0), 0, coord("Ongoing", 0), ended(true), leave},
		{"current epoch, being committed", open(0), 0, coord("PrepareCommit", 0), ended(true), leave},
		{"coordinator unknown", open(0), 0, kadm.DescribedTransaction{}, ended(true), leave},
		{"another producer at the coordinator", open(0), 0, kadm.DescribedTransaction{ProducerID: 8, State: "CompleteCommit"}, ended(true), leave},
		{"a newer epoch than ours", open(6), 5, coord("CompleteCommit", 6), ended(true), leave},
	} {
		if got := settle(tc.open, tc.epoch, tc.coordinator, tc.own); got != tc.want {
			t.Errorf("%s: settle = %d, want %d", tc.name, got, tc.want)
		}
	}
}
