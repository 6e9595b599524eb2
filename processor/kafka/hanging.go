package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offsetsTopic is Kafka's topic of committed offsets.
const offsetsTopic = "__consumer_offsets"

// offsetsPartition returns the partition of __consumer_offsets that holds
// group's offsets, as the broker picks it: the Java hash code of the group
// id (over its UTF-16 code units), made non-negative, modulo the topic's
// partition count.
func offsetsPartition(group string, partitions int32) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	return int32(uint32(h)&0x7fffffff) % partitions
}

// hangingOwn returns the open transactions, among the producers of an
// offsets partition, that this producer id left behind with an older
// epoch: once InitProducerID has returned a newer epoch, the coordinator
// has ended every transaction it knew of for this id, so one still open
// is unknown to it (a hanging transaction) and no one else will end it.
func hangingOwn(producers []kadm.DescribedProducer, id int64, epoch int16) []kadm.DescribedProducer {
	var out []kadm.DescribedProducer
	for _, p := range producers {
		if p.ProducerID == id && p.ProducerEpoch < epoch && p.CurrentTxnStartOffset >= 0 {
			out = append(out, p)
		}
	}
	return out
}

// abortHangingOwn aborts the transactions this producer left open on the
// group's offsets partition (see hangingOwn): their pending offsets would
// otherwise keep the group's committed offsets unstable for ever, and the
// role waiting for stable offsets stalled. The transactional.id's own
// fencing guarantees they can never commit. Errors are only logged: the
// role then waits as it would have.
func abortHangingOwn(ctx context.Context, cl *kgo.Client, group string, log *slog.Logger) {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return
	}
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopicsWithInternal(ctx, offsetsTopic)
	if err != nil {
		return
	}
	d, ok := topics[offsetsTopic]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return
	}
	p := offsetsPartition(group, int32(len(d.Partitions)))
	set := kadm.TopicsSet{}
	set.Add(offsetsTopic, p)
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		log.Debug("describe producers of the offsets partition", "partition", p, "err", err)
		return
	}
	var producers []kadm.DescribedProducer
	described.EachProducer(func(dp kadm.DescribedProducer) { producers = append(producers, dp) })
	for _, h := range hangingOwn(producers, id, epoch) {
		m := kadm.TxnMarkers{ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch, CoordinatorEpoch: h.CoordinatorEpoch, Topics: kadm.TopicsSet{}}
		m.Topics.Add(offsetsTopic, h.Partition)
		resp, err := adm.WriteTxnMarkers(ctx, m)
		if err == nil {
			resp.EachPartition(func(r kadm.TxnMarkersPartitionResponse) { err = errors.Join(err, r.Err) })
		}
		if err != nil {
			log.Warn("could not abort a transaction this instance left open on its group's offsets", "group", group, "producer_id", h.ProducerID, "epoch", h.ProducerEpoch, "err", err)
			continue
		}
		log.Warn("aborted a transaction this instance left open on its group's offsets (its coordinator had lost it); the group's offsets are stable again",
			"group", group, "partition", fmt.Sprintf("%s[%d]", offsetsTopic, h.Partition), "producer_id", h.ProducerID, "epoch", h.ProducerEpoch, "from_offset", h.CurrentTxnStartOffset)
	}
}
