package admin

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// Sender writes requests to flows' request topics with an idempotent
// producer, keyed by request id. Safe for concurrent use.
type Sender struct {
	topo  *topology.Topology
	codec *schemas.Codec
	cl    *kgo.Client
}

// NewSender returns a sender, which encodes with the codec of opts
// (kafka.WithCodec). Close it when done.
func NewSender(t *topology.Topology, opts ...kafka.Opt) (*Sender, error) {
	cl, err := kgo.NewClient(kafka.ClientOptions(t, "send", opts...)...)
	if err != nil {
		return nil, fmt.Errorf("admin: sender client: %w", err)
	}
	return &Sender{topo: t, codec: kafka.CodecOf(opts...), cl: cl}, nil
}

// Send writes req to its flow's request topic; done is called once the
// broker acknowledged it (or it failed). done may be nil.
func (s *Sender) Send(ctx context.Context, req *schemas.Request, done func(error)) error {
	f := s.topo.Flow(req.Flow)
	if f == nil {
		return fmt.Errorf("admin: unknown flow %q", req.Flow)
	}
	b, err := s.codec.Encode(req)
	if err != nil {
		return err
	}
	s.cl.Produce(ctx, &kgo.Record{Topic: f.Topics.Requests, Key: []byte(req.RequestID), Value: b}, func(_ *kgo.Record, err error) {
		if done != nil {
			done(err)
		}
	})
	return nil
}

// Flush waits until every sent request is acknowledged.
func (s *Sender) Flush(ctx context.Context) error { return s.cl.Flush(ctx) }

// Close flushes nothing and closes the client.
func (s *Sender) Close() { s.cl.Close() }

// Reader reads a topic of a flow as a read_committed consumer outside any
// group, from the start or the end.
type Reader struct {
	cl *kgo.Client
}

// NewReader returns a reader of topic; fromStart picks the first offset,
// otherwise it reads only records written from now on.
func NewReader(t *topology.Topology, topic string, fromStart bool, opts ...kafka.Opt) (*Reader, error) {
	at := kgo.NewOffset().AtEnd()
	if fromStart {
		at = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(kafka.ClientOptions(t, "read", opts...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(at),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("admin: reader client: %w", err)
	}
	return &Reader{cl: cl}, nil
}

// Poll returns the next records, waiting until some arrive or ctx ends.
func (r *Reader) Poll(ctx context.Context) ([]*kgo.Record, error) {
	fs := r.cl.PollFetches(ctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var err error
	fs.EachError(func(topic string, p int32, e error) {
		if err == nil {
			err = fmt.Errorf("admin: fetch %s[%d]: %w", topic, p, e)
		}
	})
	return fs.Records(), err
}

// Close closes the reader.
func (r *Reader) Close() { r.cl.Close() }
