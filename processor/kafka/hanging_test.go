package kafka

import (
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
		{"polygenelubricants", 50, 0},          // hashCode() = Integer.MIN_VALUE, & 0x7fffffff = 0
		{"f-a07c6b9f.f-a07c6b9f.gather", 4, 3}, // as a broker of 4 offsets partitions placed it
		{"", 50, 0},
	} {
		if got := offsetsPartition(tc.group, tc.partitions); got != tc.want {
			t.Errorf("offsetsPartition(%q, %d) = %d, want %d", tc.group, tc.partitions, got, tc.want)
		}
	}
}

// Only this producer id's open transactions of an older epoch are hanging:
// not its current epoch's, not a closed one, not another producer's.
func TestHangingOwn(t *testing.T) {
	ps := []kadm.DescribedProducer{
		{ProducerID: 215, ProducerEpoch: 0, CurrentTxnStartOffset: 828}, // hanging
		{ProducerID: 215, ProducerEpoch: 5, CurrentTxnStartOffset: 900}, // the current epoch
		{ProducerID: 215, ProducerEpoch: 1, CurrentTxnStartOffset: -1},  // not open
		{ProducerID: 214, ProducerEpoch: 0, CurrentTxnStartOffset: 10},  // another producer
	}
	got := hangingOwn(ps, 215, 5)
	if len(got) != 1 || got[0].ProducerEpoch != 0 || got[0].CurrentTxnStartOffset != 828 {
		t.Errorf("hangingOwn = %+v, want the epoch-0 transaction only", got)
	}
}
