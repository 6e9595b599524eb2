package kafka

import "github.com/twmb/franz-go/pkg/kgo"

// lag follows a consumer's lag per partition: the high watermark minus the
// position after the last record polled, as of the last poll that returned
// records for the partition. On a topic written in transactions the
// markers after the last record count too (a record or two). Not safe for
// concurrent use.
type lag map[int32]int64

// observe updates the lag from a poll and returns the sum over the
// partitions for which owned is true (nil: all).
func (l lag) observe(fs kgo.Fetches, owned func(int32) bool) int64 {
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if n := len(fp.Records); n > 0 {
			l[fp.Partition] = max(fp.HighWatermark-fp.Records[n-1].Offset-1, 0)
		}
	})
	var sum int64
	for p, v := range l {
		if owned == nil || owned(p) {
			sum += v
		}
	}
	return sum
}
