package kafka

import (
	"context"
	"errors"
	"sync"

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

// RunAll runs the runners until ctx ends or one fails; a failure stops the
// others. It returns the failures.
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
			if err := r.Run(ctx); err != nil {
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
