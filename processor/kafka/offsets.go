package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CommittedOffset is a group's committed offset of one partition: At is -1
// when nothing is committed.
type CommittedOffset struct {
	At       int64
	Metadata string
}

// FetchStableOffsets fetches group's committed offsets of the partitions
// of topic, requiring them stable: while a transaction holds offsets of
// one of them, it fails with kerr.UnstableOffsetCommit. The partitions
// are named in the request, so that the broker also reports offsets a
// transaction holds for a partition that has none committed yet (a fetch
// of all the group's offsets does not).
func FetchStableOffsets(ctx context.Context, cl *kgo.Client, group, topic string, partitions []int32) (map[int32]CommittedOffset, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	req.RequireStable = true
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, partitions
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := map[int32]CommittedOffset{}
	add := func(p int32, at int64, meta *string, code int16) error {
		if err := kerr.ErrorForCode(code); err != nil {
			return err
		}
		c := CommittedOffset{At: at}
		if meta != nil {
			c.Metadata = *meta
		}
		out[p] = c
		return nil
	}
	if len(resp.Groups) > 0 {
		g := resp.Groups[0]
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return nil, err
		}
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				if err := add(p.Partition, p.Offset, p.Metadata, p.ErrorCode); err != nil {
					return nil, err
				}
			}
		}
		return out, nil
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := add(p.Partition, p.Offset, p.Metadata, p.ErrorCode); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
