package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
)

// TopicResult reports what CreateTopics did with one topic.
type TopicResult struct {
	Topic      string
	Partitions int32
	Created    bool  // false when it existed already
	Err        error // non-nil when it could not be created
}

// CreateTopics creates every topic of the flows (all flows when flows is
// empty) that does not exist yet: the results topic with log-append time
// and the retention the topology sets. Existing topics are left alone and
// reported; CheckTopics tells whether they fit.
func CreateTopics(ctx context.Context, t *topology.Topology, flows []*topology.Flow, opts ...kafka.Opt) ([]TopicResult, error) {
	if err := kafka.PreflightOrWarn(ctx, t, opts...); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kafka.ClientOptions(t, "admin", opts...)...)
	if err != nil {
		return nil, fmt.Errorf("admin: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if len(flows) == 0 {
		flows = t.Flows
	}
	var out []TopicResult
	for _, f := range flows {
		for _, topic := range f.AllTopics() {
			res, err := adm.CreateTopic(ctx, int32(f.Partitions), int16(t.Kafka.ReplicationFactor), kafka.TopicConfigs(t, f, topic), topic)
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				if res.Err == nil {
					res.Err = err
				}
			}
			r := TopicResult{Topic: topic, Partitions: int32(f.Partitions), Created: res.Err == nil, Err: res.Err}
			if errors.Is(res.Err, kerr.TopicAlreadyExists) {
				r.Created, r.Err = false, nil
			}
			if r.Err != nil && ctx.Err() != nil {
				return out, fmt.Errorf("admin: create topics: %w", ctx.Err())
			}
			out = append(out, r)
		}
	}
	return out, waitVisible(ctx, cl, adm, out)
}

// waitVisible waits until every broker's metadata shows the created
// topics: a controller acknowledges a creation before every broker knows
// of it, and a role started right after `topics create` may ask any of
// them.
func waitVisible(ctx context.Context, cl *kgo.Client, adm *kadm.Client, res []TopicResult) error {
	var topics []string
	for _, r := range res {
		if r.Created {
			topics = append(topics, r.Topic)
		}
	}
	for len(topics) > 0 {
		topics = notVisible(ctx, cl, adm, topics)
		if len(topics) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("admin: created topics not visible yet (%s): %w", strings.Join(topics, ", "), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// notVisible returns the topics that some broker does not show yet, all of
// them if the brokers cannot be asked.
func notVisible(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topics []string) []string {
	brokers, err := adm.ListBrokers(ctx)
	if err != nil || len(brokers) == 0 {
		return topics
	}
	seen := map[string]int{}
	for _, b := range brokers {
		req := kmsg.NewPtrMetadataRequest()
		for _, t := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl.Broker(int(b.NodeID)))
		if err != nil {
			return topics
		}
		for _, rt := range resp.Topics {
			if rt.Topic != nil && rt.ErrorCode == 0 && len(rt.Partitions) > 0 {
				seen[*rt.Topic]++
			}
		}
	}
	var missing []string
	for _, t := range topics {
		if seen[t] < len(brokers) {
			missing = append(missing, t)
		}
	}
	return missing
}
