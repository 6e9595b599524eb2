package kafka

import (
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// Options are typed by role, as franz-go separates its producer, consumer
// and group options: an Opt configures every role and the operator tools;
// a WorkerOpt only a worker, so that an option that makes no sense for a
// role does not compile where that role is built.
type (
	// Opt configures every role (NewScatter, NewWorker, NewGather, Roles)
	// and the tools built on ClientOptions.
	Opt interface {
		ScatterOpt
		WorkerOpt
		GatherOpt
	}
	// ScatterOpt configures a scatter. Every Opt is one.
	ScatterOpt interface{ applyScatter(*options) }
	// WorkerOpt configures a worker. Every Opt is one.
	WorkerOpt interface {
		RoleOpt
		applyWorker(*workerOptions)
	}
	// GatherOpt configures a gather. Every Opt is one.
	GatherOpt interface {
		RoleOpt
		applyGather(*options)
	}
	// RoleOpt configures the roles Roles builds: an Opt applies to each,
	// a WorkerOpt to its workers.
	RoleOpt interface{ roleOpt() }
)

// options are what every role shares.
type options struct {
	instance   string
	logger     *slog.Logger
	codec      *schemas.Codec
	clientOpts []kgo.Opt
	now        func() time.Time
	hooks      hooks
	allowLost  bool // gather: rebuild from the log start when it is past the oldest needed manifest
}

// workerOptions are a worker's.
type workerOptions struct {
	options
	handlers map[string]worker.Handler
	targets  []string
}

type opt func(*options)

func (f opt) applyScatter(o *options)      { f(o) }
func (f opt) applyGather(o *options)       { f(o) }
func (f opt) applyWorker(o *workerOptions) { f(&o.options) }
func (opt) roleOpt()                       {}

type gatherOpt func(*options)

func (f gatherOpt) applyGather(o *options) { f(o) }
func (gatherOpt) roleOpt()                 {}

type workerOpt func(*workerOptions)

func (f workerOpt) applyWorker(o *workerOptions) { f(o) }
func (workerOpt) roleOpt()                       {}

// WithInstance sets the instance's stable identity, which makes its
// transactional ids and its static group membership (group.instance.id):
// a restarted instance with the same identity fences its predecessor and
// takes its partitions back at once. Default: the host name. Two instances
// of one role and flow must have different identities.
func WithInstance(id string) Opt { return opt(func(o *options) { o.instance = id }) }

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Opt { return opt(func(o *options) { o.logger = l }) }

// WithClientOptions adds franz-go options to every client the role makes
// (timeouts, a custom dialer...). They come after the TLS and SASL options
// of the topology's kafka section, so they override them.
func WithClientOptions(opts ...kgo.Opt) Opt {
	return opt(func(o *options) { o.clientOpts = append(o.clientOpts, opts...) })
}

// WithCodec sets the Avro codec the roles encode and decode with: its
// framing (single-object or a schema registry's) and the writer schemas it
// resolves. Default: schemas.Default.
func WithCodec(c *schemas.Codec) Opt { return opt(func(o *options) { o.codec = c }) }

// CodecOf returns the codec that opts set (WithCodec), for tools that
// encode as the roles do.
func CodecOf(opts ...Opt) *schemas.Codec { return commonOptions(opts).codec }

// WithHooks adds observers of the roles (see Hook). Default: none.
func WithHooks(hs ...Hook) Opt {
	return opt(func(o *options) { o.hooks = append(o.hooks, hs...) })
}

// WithLostRequestsAllowed lets the gather rebuild a partition whose log no
// longer starts at the oldest needed manifest (see LogStartError) from the
// log start, giving up the requests opened before it. Default: it refuses,
// and the role stops.
func WithLostRequestsAllowed() GatherOpt { return gatherOpt(func(o *options) { o.allowLost = true }) }

// WithHandler makes the worker serve target with h instead of the built-in
// HTTP caller.
func WithHandler(target string, h worker.Handler) WorkerOpt {
	return workerOpt(func(o *workerOptions) { o.handlers[target] = h })
}

// WithTargets restricts the worker to the named targets. Default: every
// target with a handler (WithHandler) or an http section.
func WithTargets(names ...string) WorkerOpt {
	return workerOpt(func(o *workerOptions) { o.targets = append(o.targets, names...) })
}

func defaultOptions() options {
	return options{codec: schemas.Default, now: time.Now}
}

func (o *options) finish() {
	if o.instance == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "scattergather"
		}
		o.instance = h
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
}

func scatterOptions(opts []ScatterOpt) *options {
	o := defaultOptions()
	for _, opt := range opts {
		opt.applyScatter(&o)
	}
	o.finish()
	return &o
}

func gatherOptions(opts []GatherOpt) *options {
	o := defaultOptions()
	for _, opt := range opts {
		opt.applyGather(&o)
	}
	o.finish()
	return &o
}

func buildWorkerOptions(opts []WorkerOpt) *workerOptions {
	o := &workerOptions{options: defaultOptions(), handlers: map[string]worker.Handler{}}
	for _, opt := range opts {
		opt.applyWorker(o)
	}
	o.finish()
	return o
}

// commonOptions applies the options every role shares.
func commonOptions(opts []Opt) *options {
	o := defaultOptions()
	for _, opt := range opts {
		opt.applyScatter(&o)
	}
	o.finish()
	return &o
}
