package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
)

// TopicConfigs returns the configs of a flow's topic that the gather's
// guarantees depend on, for creating it; nil for a topic with none.
func TopicConfigs(f *topology.Flow, topic string) map[string]*string {
	if topic != f.Topics.Results {
		return nil
	}
	lat := "LogAppendTime"
	ret := strconv.FormatInt(f.Topics.ResultsRetention.D.Milliseconds(), 10)
	return map[string]*string{
		"message.timestamp.type": &lat,
		"retention.ms":           &ret,
	}
}

// TopicError describes a topic that does not fit its flow.
type TopicError struct {
	Topic   string
	Problem string
}

func (e *TopicError) Error() string { return fmt.Sprintf("topic %s: %s", e.Topic, e.Problem) }

// CheckTopics verifies that a flow's topics exist, and that its results
// topic has the partitions of the topology, log-append time and at least
// the topology's retention. It returns every problem found, joined, with a
// hint to run `scattergather topics create`.
func CheckTopics(ctx context.Context, t *topology.Topology, f *topology.Flow, opts ...Opt) error {
	o := commonOptions(opts)
	if err := preflight(ctx, t, o); err != nil {
		return err
	}
	cl, err := kgo.NewClient(baseOpts(t, o, "admin")...)
	if err != nil {
		return errorf("client: %w", err)
	}
	defer cl.Close()
	return checkTopics(ctx, kadm.NewClient(cl), f)
}

func checkTopics(ctx context.Context, adm *kadm.Client, f *topology.Flow) error {
	topics := f.AllTopics()
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return errorf("list topics: %w", err)
	}
	var problems []error
	for _, topic := range topics {
		d, ok := details[topic]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			problems = append(problems, &TopicError{topic, "does not exist"})
			continue
		}
		if d.Err != nil {
			problems = append(problems, &TopicError{topic, d.Err.Error()})
			continue
		}
		if topic == f.Topics.Results && len(d.Partitions) != f.Partitions {
			problems = append(problems, &TopicError{topic, fmt.Sprintf("has %d partitions, the topology says %d", len(d.Partitions), f.Partitions)})
		}
	}
	if len(problems) == 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, f.Topics.Results)
		if err != nil {
			return errorf("describe %s: %w", f.Topics.Results, err)
		}
		rc, err := rcs.On(f.Topics.Results, nil)
		if err != nil {
			return errorf("describe %s: %w", f.Topics.Results, err)
		}
		for _, c := range rc.Configs {
			v := c.MaybeValue()
			switch c.Key {
			case "message.timestamp.type":
				if v != "LogAppendTime" {
					problems = append(problems, &TopicError{f.Topics.Results, fmt.Sprintf("message.timestamp.type is %s, want LogAppendTime: deadlines are decided by the broker's clock", v)})
				}
			case "retention.ms":
				ms, _ := strconv.ParseInt(v, 10, 64)
				if want := f.Topics.ResultsRetention.D.Milliseconds(); ms >= 0 && ms < want {
					problems = append(problems, &TopicError{f.Topics.Results, fmt.Sprintf("retention.ms is %d, less than topics.results_retention %d: a rebuild could not read back the open requests", ms, want)})
				}
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("kafka: flow %s: %w (create them with `scattergather topics create`)", f.Name, errors.Join(problems...))
}

// partitionCount returns the number of partitions of topic.
func partitionCount(ctx context.Context, adm *kadm.Client, topic string) (int32, error) {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, errorf("list %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return 0, errorf("topic %s does not exist (create it with `scattergather topics create`)", topic)
	}
	return int32(len(d.Partitions)), nil
}
