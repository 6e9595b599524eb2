package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// ClientOptions are the franz-go options of a client that the operator
// tools (topic creation, replay, send, tail) make for t, as the roles make
// theirs: see baseOpts. client names its use in the client id and logs.
func ClientOptions(t *topology.Topology, client string, opts ...Opt) []kgo.Opt {
	return baseOpts(t, commonOptions(opts), client)
}

// baseOpts are the options of every client of a flow: the seeds, the
// connection security of kafka.tls and kafka.sasl (security.go), logging,
// the hooks' client hooks (HookClient), then the options of
// WithClientOptions, which may override them.
func baseOpts(t *topology.Topology, o *options, role string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(t.Kafka.Brokers...),
		kgo.ClientID(t.Kafka.ClientID + "-" + role),
		kgo.WithLogger(slogAdapter{o.logger.With("client", role)}),
		kgo.RecordPartitioner(partitioner{}),
		kgo.ProducerLinger(0),
	}
	opts = append(opts, securityOpts(&t.Kafka)...)
	opts = append(opts, o.hooks.clientHooks(role)...)
	return append(opts, o.clientOpts...)
}

// partitioner sends a record to the partition it names when it names one
// (Partition >= 0 and the ctx marker), and by Kafka's key hash otherwise.
type partitioner struct{}

type explicitPartition struct{}

// explicit is the context of a record that names its partition: one for
// all of them, as it carries nothing of the record's own.
var explicit = context.WithValue(context.Background(), explicitPartition{}, true)

// toPartition marks r to be written to r.Partition.
func toPartition(r *kgo.Record, p int32) *kgo.Record {
	r.Partition = p
	r.Context = explicit
	return r
}

func (partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return topicPartitioner{key: kgo.StickyKeyPartitioner(nil).ForTopic(topic)}
}

type topicPartitioner struct {
	key kgo.TopicPartitioner
}

func (p topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return isExplicit(r) || p.key.RequiresConsistency(r)
}

// OnNewBatch forwards to the key partitioner, whose sticky choice for
// records without a key moves on with each new batch.
func (p topicPartitioner) OnNewBatch() {
	if nb, ok := p.key.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}

func (p topicPartitioner) Partition(r *kgo.Record, n int) int {
	if isExplicit(r) {
		return int(r.Partition)
	}
	return p.key.Partition(r, n)
}

func isExplicit(r *kgo.Record) bool {
	return r.Context != nil && r.Context.Value(explicitPartition{}) != nil
}

// deadLetter builds the dead-letter record of a record that cannot be
// processed.
func deadLetter(f *topology.Flow, stage string, src *kgo.Record, kind, reason string) *kgo.Record {
	return setAside(f.Topics.DeadLetter, f, stage, src, kind, reason)
}

// setAside builds the record of src for topic, the dead-letter or the late
// topic: the original key and bytes, the reason and the origin in the
// headers of package schemas.
func setAside(topic string, f *topology.Flow, stage string, src *kgo.Record, kind, reason string) *kgo.Record {
	return &kgo.Record{
		Topic: topic,
		Key:   src.Key,
		Value: src.Value,
		Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderReason, Value: []byte(reason)},
			{Key: schemas.HeaderReasonKind, Value: []byte(kind)},
			{Key: schemas.HeaderStage, Value: []byte(stage)},
			{Key: schemas.HeaderFlow, Value: []byte(f.Name)},
			{Key: schemas.HeaderTopic, Value: []byte(src.Topic)},
			{Key: schemas.HeaderPartition, Value: []byte(strconv.Itoa(int(src.Partition)))},
			{Key: schemas.HeaderOffset, Value: []byte(strconv.FormatInt(src.Offset, 10))},
		},
	}
}

// Header returns the value of header key of r (one of the schemas.Header
// constants, for records of the dead-letter and late topics), or "".
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// fetchErrors logs the errors of a poll and returns the first fatal one.
func fetchErrors(fs kgo.Fetches, log *slog.Logger) error {
	var fatal error
	fs.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, kgo.ErrClientClosed):
			fatal = err
		default:
			log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		}
	})
	return fatal
}

// pollBuffered returns what the client has fetched already: franz-go's
// PollFetches with a nil context, which does not wait. franz-go counts a
// fetch's records as buffered a moment before it hands the fetch to
// polls; records counted but not yet handed over are waited for, up to
// handOverWait.
func pollBuffered(sess *kgo.GroupTransactSession) kgo.Fetches {
	fs := sess.PollFetches(nil) //nolint:staticcheck // nil is "do not wait"
	if len(fs) > 0 || sess.Client().BufferedFetchRecords() == 0 {
		return fs
	}
	ctx, cancel := context.WithTimeout(context.Background(), handOverWait)
	defer cancel()
	if fs = sess.PollFetches(ctx); fs.NumRecords() == 0 && ctx.Err() != nil {
		return nil
	}
	return fs
}

// handOverWait bounds pollBuffered's wait for a fetch being handed over.
const handOverWait = 10 * time.Millisecond

// slogAdapter routes franz-go's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Level() kgo.LogLevel {
	switch {
	case a.l.Enabled(context.Background(), slog.LevelDebug):
		return kgo.LogLevelDebug
	case a.l.Enabled(context.Background(), slog.LevelInfo):
		return kgo.LogLevelWarn // franz-go's info lines are chatty
	}
	return kgo.LogLevelWarn
}

func (a slogAdapter) Log(level kgo.LogLevel, msg string, kv ...any) {
	var l slog.Level
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo:
		l = slog.LevelInfo
	default:
		l = slog.LevelDebug
	}
	a.l.Log(context.Background(), l, "kafka: "+msg, kv...)
}

func errorf(format string, args ...any) error { return fmt.Errorf("kafka: "+format, args...) }
