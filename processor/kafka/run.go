package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/scattergather/scattergather/processor/topology"
)

// Roles of the run command.
const (
	RoleScatter = "scatter"
	RoleWorker  = "worker"
	RoleGather  = "gather"
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
// its targets can be served (an http section or a Go handler).
func Roles(t *topology.Topology, flows []*topology.Flow, role, stateDir string, opts ...Option) ([]Runner, error) {
	var out []Runner
	for _, f := range flows {
		if role == RoleScatter || role == RoleAll {
			out = append(out, NewScatter(t, f, opts...))
		}
		if role == RoleWorker || role == RoleAll {
			w, err := NewWorker(t, f, opts...)
			if err != nil && role == RoleWorker {
				return nil, err
			}
			if err == nil {
				out = append(out, w)
			}
		}
		if role == RoleGather || role == RoleAll {
			g, err := NewGather(t, f, stateDir, opts...)
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

// Permanent marks an error that restarting the role will not cure: wrong
// topics, state held by another process, a fenced identity, missing
// authorisation.
type Permanent struct{ Err error }

func (e *Permanent) Error() string { return e.Err.Error() }
func (e *Permanent) Unwrap() error { return e.Err }

// IsPermanent reports whether err is one that a restart will not cure.
func IsPermanent(err error) bool {
	var p *Permanent
	var te *TopicError
	switch {
	case errors.As(err, &p), errors.As(err, &te),
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
func Supervise(ctx context.Context, log *slog.Logger, name string, r Runner) error {
	backoff := 500 * time.Millisecond
	roleOf(r).o.metrics.RoleStarted(name)
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
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = 500 * time.Millisecond // it ran well for a while
		}
		log.Error("role failed; restarting it", "role", name, "in", backoff, "err", err)
		roleOf(r).o.metrics.RoleRestarted(name)
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
			if err := Supervise(ctx, roleOf(r).log, fmt.Sprintf("%T", r), r); err != nil {
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
// (every target's, for a worker).
type readiness struct {
	once    sync.Once
	ch      chan struct{}
	mu      sync.Mutex
	pending int
}

func newReadiness(parts int) *readiness {
	return &readiness{ch: make(chan struct{}), pending: parts}
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

// Ready is closed once the role has been assigned partitions: a request
// sent after it is read without waiting for a group to form.
func (r *readiness) Ready() <-chan struct{} { return r.ch }

// role is what Supervise needs of a runner: its options and logger.
type role struct {
	o   *options
	log *slog.Logger
}

func roleOf(r Runner) role {
	switch r := r.(type) {
	case *Scatter:
		return role{r.o, r.log}
	case *Worker:
		return role{r.o, r.log}
	case *Gather:
		return role{r.o, r.log}
	}
	return role{&options{}, slog.Default()}
}
