package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// Roles of the run command.
const (
	RoleScatter = schemas.StageScatter
	RoleWorker  = schemas.StageWorker
	RoleGather  = schemas.StageGather
	RoleAll     = "all"
)

// Runner is a role of one flow.
type Runner interface {
	// Run runs the role until ctx ends or a fatal error.
	Run(ctx context.Context) error
	// Ready is closed once the role has been assigned partitions.
	Ready() <-chan struct{}
}

// Roles builds the runners of role ("scatter", "worker", "gather" or
// "all") for each flow. With "all", a flow's worker runs only if some of
// its targets can be served (an http section or a Go handler). Each Opt
// applies to every role, each WorkerOpt to the workers, each GatherOpt to
// the gathers.
func Roles(t *topology.Topology, flows []*topology.Flow, role, stateDir string, opts ...RoleOpt) ([]Runner, error) {
	var (
		common []Opt
		wopts  []WorkerOpt
		gopts  []GatherOpt
	)
	for _, o := range opts {
		switch o := o.(type) {
		case Opt:
			common = append(common, o)
			wopts = append(wopts, o)
			gopts = append(gopts, o)
		case WorkerOpt:
			wopts = append(wopts, o)
		case GatherOpt:
			gopts = append(gopts, o)
		}
	}
	var out []Runner
	for _, f := range flows {
		if role == RoleScatter || role == RoleAll {
			out = append(out, NewScatter(t, f, asScatter(common)...))
		}
		if role == RoleWorker || role == RoleAll {
			w, err := NewWorker(t, f, wopts...)
			if err != nil && role == RoleWorker {
				return nil, err
			}
			if err == nil {
				out = append(out, w)
			}
		}
		if role == RoleGather || role == RoleAll {
			g, err := NewGather(t, f, stateDir, gopts...)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		return nil, errorf("role %q: nothing to run", role)
	}
	return out, nil
}

func asScatter(opts []Opt) []ScatterOpt {
	out := make([]ScatterOpt, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}

// PermanentError marks an error that restarting the role will not cure:
// wrong topics, state held by another process, a fenced identity, missing
// authorisation.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the error marked permanent.
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is one that a restart will not cure.
func IsPermanent(err error) bool {
	var p *PermanentError
	var te *TopicError
	var we *WriteError
	switch {
	case errors.As(err, &p), errors.As(err, &te), errors.As(err, &we),
		errors.Is(err, kerr.ProducerFenced),
		errors.Is(err, kerr.FencedInstanceID),
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed),
		errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.SaslAuthenticationFailed):
		return true
	}
	return false
}

// Supervise runs r until ctx ends. When r fails with an error that is not
// permanent (a broker gone for longer than the clients retry, a
// transaction that could not end), it logs and runs r again after a
// backoff that doubles from 500ms to 30s; the role then starts over from
// the committed offsets, which is always safe. A permanent error is
// returned.
//
// r runs under the profiler labels role=<scatter|worker|gather> and
// flow=<flow>, and so do the goroutines it starts (its Kafka clients',
// its store's): a CPU profile of a process running several roles splits
// by role (go tool pprof -tagfocus role=gather).
func Supervise(ctx context.Context, r Runner) error {
	rl := roleOf(r)
	var err error
	pprof.Do(ctx, pprof.Labels("role", rl.name, "flow", rl.flow), func(ctx context.Context) { err = supervise(ctx, r, rl) })
	return err
}

func supervise(ctx context.Context, r Runner, rl role) error {
	backoff := 500 * time.Millisecond
	each(rl.o.hooks, func(h HookRoleRestart) { h.OnRoleStart(rl.flow, rl.name) })
	for {
		start := time.Now()
		err := r.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return nil
		}
		if IsPermanent(err) {
			if rl.rd != nil {
				rl.rd.setTrouble("stopped: " + err.Error())
			}
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = 500 * time.Millisecond // it ran well for a while
		}
		rl.log.Error("role failed; restarting it", "in", backoff, "err", err)
		if rl.rd != nil {
			why := "restarting after a failure: " + err.Error()
			rl.rd.down.Store(&why)
			rl.rd.transaction(false)
		}
		each(rl.o.hooks, func(h HookRoleRestart) { h.OnRoleRestart(rl.flow, rl.name) })
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// RunAll runs the runners, each supervised (see Supervise), until ctx ends
// or one fails permanently; a permanent failure stops the others. It
// returns the failures.
func RunAll(ctx context.Context, runners ...Runner) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Supervise(ctx, r); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readiness is closed once a role has its first partitions assigned
// (every target's, for a worker), and logs the role's readiness as it
// changes (see observe).
type readiness struct {
	once    sync.Once
	ch      chan struct{}
	mu      sync.Mutex
	pending int

	logMu  sync.Mutex
	log    *slog.Logger
	logged bool // a line was logged
	ready  bool // as last logged
	detail string

	trouble atomic.Pointer[string] // why the role cannot go on, or nil
	down    atomic.Pointer[string] // why the brokers do not serve it, or nil
	// txnSince is when the open transaction began (unix ms), 0 when none
	// is open: one that waits long shows brokers that do not acknowledge
	// (fewer in sync than min.insync.replicas).
	txnSince atomic.Int64
}

// txnWaitShown is how long a transaction may wait for the brokers before
// readiness says so.
const txnWaitShown = 5 * time.Second

func newReadiness(parts int, log *slog.Logger) *readiness {
	return &readiness{ch: make(chan struct{}), pending: parts, log: log}
}

// assigned records that one part of the role got partitions.
func (r *readiness) assigned() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending > 0 {
		r.pending--
	}
	if r.pending == 0 {
		r.once.Do(func() { close(r.ch) })
	}
}

// setTrouble makes the role not ready, with why as the detail, until
// clearTrouble: records it cannot write, or a stop.
func (r *readiness) setTrouble(why string) { r.trouble.Store(&why) }

// clearTrouble ends what setTrouble said.
func (r *readiness) clearTrouble() { r.trouble.Store(nil) }

// polled records what a poll says of the brokers: fetch errors (a broker
// gone, a group that cannot form) make the role not ready with them, until
// a poll without errors.
func (r *readiness) polled(fs kgo.Fetches) {
	if why := FetchTrouble(fs); why != "" {
		r.down.Store(&why)
		return
	}
	r.down.Store(nil)
}

// FetchTrouble returns why a poll says the brokers do not serve the
// client ("waiting for the brokers: <the first fetch error>"), or "" for a
// poll without errors other than its context's end. Readiness reports it.
func FetchTrouble(fs kgo.Fetches) string {
	var why string
	fs.EachError(func(_ string, _ int32, err error) {
		if why == "" && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			why = fmt.Sprintf("waiting for the brokers: %v", err)
		}
	})
	return why
}

// transaction records that a transaction began (true) or ended (false).
func (r *readiness) transaction(open bool) {
	if open {
		r.txnSince.Store(time.Now().UnixMilli())
		return
	}
	r.txnSince.Store(0)
}

// troubled returns why the role is not ready whatever its partitions and
// lag: what setTrouble said, a restart after a failure, fetch errors, or a
// transaction the brokers have not acknowledged for txnWaitShown; or "".
func (r *readiness) troubled() string {
	if p := r.trouble.Load(); p != nil {
		return *p
	}
	if p := r.down.Load(); p != nil {
		return *p
	}
	if since := r.txnSince.Load(); since > 0 {
		if waited := time.Since(time.UnixMilli(since)); waited > txnWaitShown {
			return fmt.Sprintf("a transaction has waited %s for the brokers to acknowledge it (are fewer than min.insync.replicas in sync?)", waited.Round(time.Second))
		}
	}
	return ""
}

// Ready is closed once the role has been assigned partitions: a request
// sent after it is read without waiting for a group to form.
func (r *readiness) Ready() <-chan struct{} { return r.ch }

// observe logs st when the role's readiness changed since the last call:
// one line when it becomes ready, and one, with the reason, when it stops
// being ready. The roles call it after each poll. Safe for concurrent use.
func (r *readiness) observe(st Status) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	switch {
	case st.Ready && (!r.logged || !r.ready):
		r.log.Info("ready")
	case !st.Ready && r.logged && r.ready:
		r.log.Warn("not ready", "why", st.Detail)
	case !st.Ready && !r.logged && st.Detail != r.detail:
		// Before the first ready line only the change of reason is
		// worth a line (a rebuild starting, for instance).
		r.log.Info("not ready yet", "why", st.Detail)
		r.detail = st.Detail
		return
	default:
		return
	}
	r.logged, r.ready, r.detail = true, st.Ready, st.Detail
}

// role is what Supervise needs of a runner: its name, flow, options and
// logger.
type role struct {
	name, flow string
	o          *options
	log        *slog.Logger
	rd         *readiness
}

func roleOf(r Runner) role {
	switch r := r.(type) {
	case *Scatter:
		return role{RoleScatter, r.flow.Name, r.o, r.log, r.readiness}
	case *Worker:
		return role{RoleWorker, r.flow.Name, &r.o.options, r.log, r.readiness}
	case *Gather:
		return role{RoleGather, r.flow.Name, r.o, r.log, r.readiness}
	}
	return role{name: fmt.Sprintf("%T", r), o: &options{}, log: slog.Default()}
}

// Status is a role's readiness as /readyz reports it.
type Status struct {
	Role   string `json:"role"`
	Flow   string `json:"flow"`
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"`
}

// Statuser is implemented by the roles: their readiness.
type Statuser interface {
	Status() Status
}
