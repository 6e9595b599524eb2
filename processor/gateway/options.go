package gateway

import (
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	"github.com/scattergather/scattergather/processor/kafka"
)

// Defaults of the options.
const (
	// DefaultAddr is where the gateway listens: loopback, port 8090
	// (8081 to 8083 are the example topology's providers).
	DefaultAddr = "127.0.0.1:8090"
	// DefaultMaxWait caps the wait of any request, however long its
	// flow's timeout or its Prefer header.
	DefaultMaxWait = time.Minute
	// DefaultWaitMargin is added to a flow's timeout to make a POST's
	// default wait: the gather writes the aggregate at the deadline at
	// the latest, plus the time to commit it and read it back.
	DefaultWaitMargin = 2 * time.Second
	// DefaultMaxWaiting bounds the requests waiting for their aggregate
	// at once; more are answered 503 with Retry-After.
	DefaultMaxWaiting = 10000
	// DefaultIndexSize bounds the aggregates (and, apart, the sent
	// requests) the index holds.
	DefaultIndexSize = 100000
	// DefaultIndexBytes bounds the bytes of the aggregates the index
	// holds (their JSON), whatever their number.
	DefaultIndexBytes = 256 << 20
	// DefaultIndexTTL is how long the index keeps an aggregate or a sent
	// request; a starting gateway reads the aggregates of this long ago
	// on.
	DefaultIndexTTL = 10 * time.Minute
	// DefaultProduceTimeout bounds the production of a request: past it
	// the POST is answered 503 with Retry-After.
	DefaultProduceTimeout = 5 * time.Second
	// EnvelopeSlack is what a request envelope may add to the flow's
	// payload limit (its attributes and the JSON around the payload).
	EnvelopeSlack = 64 << 10
)

// Option configures a Gateway.
type Option func(*options)

type options struct {
	addr           string
	ln             net.Listener
	tls            *tls.Config
	token          string
	log            *slog.Logger
	hooks          []Hook
	kafkaOpts      []kafka.Opt
	maxWait        time.Duration
	waitMargin     time.Duration
	maxWaiting     int
	indexSize      int
	indexBytes     int
	indexTTL       time.Duration
	produceTimeout time.Duration
	now            func() time.Time
}

// WithAddr makes Run listen on addr (host:port; port 0 picks a free one,
// see Addr). Default: DefaultAddr. Empty: Run serves nothing, and the
// Gateway is only an http.Handler the program serves itself.
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// WithListener makes Run serve on ln, which it closes when it returns,
// instead of listening on an address: for a program that chose the
// address itself. Run then serves only once.
func WithListener(ln net.Listener) Option { return func(o *options) { o.ln = ln } }

// WithTLS makes Run serve HTTPS with cfg (its certificates; ClientAuth
// and ClientCAs for mutual TLS). Default: plain HTTP.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithBearerToken requires "Authorization: Bearer <token>" on every flow
// request, compared in constant time; a missing or wrong token is
// answered 401. The token is never logged. Default: no check.
func WithBearerToken(token string) Option { return func(o *options) { o.token = token } }

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithHooks adds observers of the gateway (see Hook). Default: none.
func WithHooks(hs ...Hook) Option { return func(o *options) { o.hooks = append(o.hooks, hs...) } }

// WithKafkaOptions adds the options of the gateway's Kafka clients: the
// codec, client options, client hooks (see kafka.ClientOptions).
func WithKafkaOptions(opts ...kafka.Opt) Option {
	return func(o *options) { o.kafkaOpts = append(o.kafkaOpts, opts...) }
}

// WithMaxWait caps the wait of any request. Default: DefaultMaxWait.
func WithMaxWait(d time.Duration) Option { return func(o *options) { o.maxWait = d } }

// WithWaitMargin sets what a POST's default wait adds to its flow's
// timeout. Default: DefaultWaitMargin.
func WithWaitMargin(d time.Duration) Option { return func(o *options) { o.waitMargin = d } }

// WithMaxWaiting bounds the requests waiting at once. Default:
// DefaultMaxWaiting.
func WithMaxWaiting(n int) Option { return func(o *options) { o.maxWaiting = n } }

// WithIndex bounds the index: at most size aggregates of at most bytes
// of JSON in all, and size sent requests, each kept for ttl. Default:
// DefaultIndexSize, DefaultIndexBytes, DefaultIndexTTL.
func WithIndex(size, bytes int, ttl time.Duration) Option {
	return func(o *options) { o.indexSize, o.indexBytes, o.indexTTL = size, bytes, ttl }
}

// WithProduceTimeout bounds the production of a request. Default:
// DefaultProduceTimeout.
func WithProduceTimeout(d time.Duration) Option { return func(o *options) { o.produceTimeout = d } }
