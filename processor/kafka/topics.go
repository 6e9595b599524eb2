package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scattergather/scattergather/processor/topology"
)

// brokerMaxMessageBytes is Kafka's default max.message.bytes (1 MiB plus
// the batch header): the largest record batch a topic accepts.
const brokerMaxMessageBytes = 1048588

// recordOverhead is what a record adds to its value in a batch: the key (a
// request id, at most schemas' limit), headers, the record and batch
// headers. A topic's max.message.bytes must leave this much room above the
// largest value the flow writes to it.
const recordOverhead = 2048

// maxValueBytes returns the largest value the flow writes to topic, or 0
// for a topic it does not bound (requests, dead letters, late results).
func maxValueBytes(f *topology.Flow, topic string) int64 {
	switch {
	case topic == f.Topics.Aggregated:
		return int64(f.Limits.MaxAggregateBytes)
	case topic == f.Topics.Results:
		return int64(f.Limits.MaxPayloadBytes)
	}
	for _, t := range f.Targets {
		if t.Topic == topic {
			return int64(f.Limits.MaxPayloadBytes)
		}
	}
	return 0
}

// MinInsyncReplicas is the min.insync.replicas that topics create sets on
// the topics of a topology replicated rf times, or 0 when it leaves the
// broker's default: 2 from three replicas on, so that a record acknowledged
// with acks=all (every producer here is idempotent, hence acks=all) is on
// at least two brokers, and one broker can be down without stopping writes.
// With one or two replicas the broker's default stays: a minimum of two out
// of two would stop every write while either broker is down.
func MinInsyncReplicas(rf int) int {
	if rf >= 3 {
		return 2
	}
	return 0
}

// TopicConfigs returns the configs a flow's topic is created with: every
// topic deletes by time and never compacts (a broker whose default is
// compaction would otherwise remove manifests, tasks of one request and
// dead letters that share a key); the results topic takes log-append time,
// the topology's retention and no size limit; each topic the flow writes
// bounded values to accepts them; and with three replicas or more a write
// is acknowledged once two hold it (MinInsyncReplicas).
func TopicConfigs(t *topology.Topology, f *topology.Flow, topic string) map[string]*string {
	str := func(s string) *string { return &s }
	cfg := map[string]*string{"cleanup.policy": str("delete")}
	if n := MinInsyncReplicas(t.Kafka.ReplicationFactor); n > 0 {
		cfg["min.insync.replicas"] = str(strconv.Itoa(n))
	}
	if n := maxValueBytes(f, topic); n > 0 {
		cfg["max.message.bytes"] = str(strconv.FormatInt(max(n+recordOverhead, brokerMaxMessageBytes), 10))
	}
	if topic == f.Topics.Results {
		cfg["message.timestamp.type"] = str("LogAppendTime")
		cfg["retention.ms"] = str(strconv.FormatInt(f.Topics.ResultsRetention.D.Milliseconds(), 10))
		cfg["retention.bytes"] = str("-1")
	}
	return cfg
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
		ps, err := checkTopicConfigs(ctx, adm, f, topics)
		if err != nil {
			return err
		}
		problems = append(problems, ps...)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("kafka: flow %s: %w (create them with `scattergather topics create`)", f.Name, errors.Join(problems...))
}

// checkTopicConfigs returns what in the topics' configs breaks the
// flow's guarantees, each with the value to set.
func checkTopicConfigs(ctx context.Context, adm *kadm.Client, f *topology.Flow, topics []string) ([]error, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, errorf("describe topics of flow %s: %w", f.Name, err)
	}
	var problems []error
	bad := func(topic, format string, args ...any) {
		problems = append(problems, &TopicError{topic, fmt.Sprintf(format, args...)})
	}
	for _, topic := range topics {
		rc, err := rcs.On(topic, nil)
		if err != nil {
			return nil, errorf("describe %s: %w", topic, err)
		}
		for _, c := range rc.Configs {
			v := c.MaybeValue()
			switch c.Key {
			case "cleanup.policy":
				if topic != f.Topics.Requests && strings.Contains(v, "compact") {
					bad(topic, "cleanup.policy is %s, want delete: compaction keeps one record per key and removes the others (manifests, a request's tasks, dead letters); set cleanup.policy=delete", v)
				}
			case "max.message.bytes":
				n, _ := strconv.ParseInt(v, 10, 64)
				if want := maxValueBytes(f, topic); want > 0 && n < want+recordOverhead {
					bad(topic, "max.message.bytes is %d, below the flow's largest record here (%d bytes of value, limits.max_%s_bytes, plus %d of key and headers): set max.message.bytes=%d or lower the limit",
						n, want, limitName(f, topic), recordOverhead, want+recordOverhead)
				}
			}
			if topic != f.Topics.Results {
				continue
			}
			switch c.Key {
			case "message.timestamp.type":
				if v != "LogAppendTime" {
					bad(topic, "message.timestamp.type is %s, want LogAppendTime: deadlines are decided by the broker's clock", v)
				}
			case "retention.ms":
				ms, _ := strconv.ParseInt(v, 10, 64)
				if want := f.Topics.ResultsRetention.D.Milliseconds(); ms >= 0 && ms < want {
					bad(topic, "retention.ms is %d, less than topics.results_retention %d: a rebuild could not read back the open requests", ms, want)
				}
			case "retention.bytes":
				if v != "-1" {
					bad(topic, "retention.bytes is %s, want -1: size-based retention deletes the manifests of open requests whatever their age, and a rebuild loses them; bound the topic by retention.ms (topics.results_retention)", v)
				}
			}
		}
	}
	return problems, nil
}

func limitName(f *topology.Flow, topic string) string {
	if topic == f.Topics.Aggregated {
		return "aggregate"
	}
	return "payload"
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

// aclWrite is the bit of the WRITE operation in a topic's authorized
// operations (KIP-430); notProvided is the value of a broker that did not
// say.
const (
	aclWrite    = 1 << 4
	notProvided = math.MinInt32
)

// checkWriteAuthorized asks the broker whether this client's principal may
// write to topic. A broker without an authorizer allows everything; one
// that does not report authorized operations is not second-guessed.
func checkWriteAuthorized(ctx context.Context, cl *kgo.Client, topic string) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.IncludeTopicAuthorizedOperations = true
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil // the roles' own requests report an unreachable broker
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); errors.Is(err, kerr.TopicAuthorizationFailed) {
			return fmt.Errorf("topic %s: %w", topic, err)
		}
		if ops := t.AuthorizedOperations; ops != notProvided && ops&aclWrite == 0 {
			return fmt.Errorf("topic %s: the principal may not WRITE to it", topic)
		}
	}
	return nil
}
