package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/scattergather/scattergather"
	"github.com/scattergather/scattergather/internal/collect"
	"github.com/scattergather/scattergather/internal/load"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/gateway"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// Config sets up a demo run.
type Config struct {
	// Out receives the header, the progress line and the report.
	Out io.Writer
	// Logger receives the pipeline's logs; nil discards them.
	Logger *slog.Logger
	// Requests to send (> 0), at Rate per second (> 0).
	Requests int
	Rate     float64
	// Seed of the simulated providers.
	Seed uint64
	// Serve, when not empty, is the address of an HTTP gateway to the
	// flow that Run starts after the report; the pipeline then runs on
	// until ctx ends.
	Serve string
}

// Run runs the example flow on an in-process broker with the simulated
// providers, sends cfg.Requests requests and writes the report to cfg.Out.
// It returns whether every request had exactly one aggregate and every
// send was acknowledged; err is for a run that could not be carried out.
func Run(ctx context.Context, cfg Config) (exactlyOnce bool, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	out := cfg.Out
	start := time.Now()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return false, fmt.Errorf("demo: in-process broker: %w", err)
	}
	defer cluster.Close()

	providers := Providers(cfg.Seed)
	vars := map[string]string{"SG_BROKERS": strings.Join(cluster.ListenAddrs(), ",")}
	for _, p := range providers {
		if err := p.Start("127.0.0.1:0"); err != nil {
			return false, err
		}
		defer p.Stop()
		vars[p.env] = p.url
	}
	topo, err := topology.Parse("topology.yaml", scattergather.ExampleTopology, func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	})
	if err != nil {
		return false, err
	}
	flow := topo.Flows[0]
	stateDir, err := os.MkdirTemp("", "scattergather-demo-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(stateDir)

	fmt.Fprintf(out, "scattergather demo: flow %q (%s), strategy %s, consolidation %s by %s, timeout %s\n",
		flow.Name, flow.Description, flow.Strategy.Type, flow.Consolidate.Type, flow.Consolidate.Field, flow.Timeout)
	fmt.Fprintf(out, "in-process Kafka (kfake) at %s, Pebble state in %s\n", vars["SG_BROKERS"], stateDir)
	for _, p := range providers {
		fmt.Fprintln(out, p.describe())
	}

	g, stop, err := startPipeline(ctx, topo, stateDir, cfg.Logger)
	if err != nil {
		return false, err
	}
	defer stop()
	col, err := collect.Start(topo, flow, collect.WithLogger(cfg.Logger))
	if err != nil {
		return false, err
	}
	defer col.Close()
	progress := newProgress(out)
	show := func(sent int) { progress.show(sent, cfg.Requests, col.Count(), g.Stats().Open) }
	l, err := sendLoad(ctx, topo, flow, cfg, show)
	if err != nil {
		return false, err
	}
	// Every request completes by its deadline; allow for ticks and slack.
	if err := awaitAll(ctx, col, l.ids, flow.Timeout.D+10*time.Second, func() { show(cfg.Requests) }); err != nil {
		return false, err
	}
	col.Close()
	progress.done()

	r := &report{requests: cfg.Requests, elapsed: time.Since(start), flow: flow, stats: g.Stats(),
		providers: providers, load: l, col: col}
	r.write(out)
	if cfg.Serve != "" {
		if err := serve(ctx, topo, cfg); err != nil {
			return false, err
		}
	}
	return r.exactlyOnce(), nil
}

// serve runs a gateway to the demo's flow on cfg.Serve until ctx ends.
func serve(ctx context.Context, topo *topology.Topology, cfg Config) error {
	g, err := gateway.New(topo, nil, gateway.WithAddr(cfg.Serve), gateway.WithLogger(cfg.Logger))
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case err := <-done:
		return err
	}
	fmt.Fprintf(cfg.Out, "\nHTTP gateway on http://%[1]s (Ctrl-C stops the demo); ask it for the cheapest fare:\n"+
		"  curl -d '{\"from\":\"AMS\",\"to\":\"JFK\"}' http://%[1]s/v1/flows/%[2]s/requests\n", g.Addr(), topo.Flows[0].Name)
	return <-done
}

// startPipeline creates the topics and runs every role of topo in the
// background until stop; it returns the gather, whose stats the report
// shows.
func startPipeline(ctx context.Context, topo *topology.Topology, stateDir string, log *slog.Logger) (g *kafka.Gather, stop func(), err error) {
	setup, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	if _, err := admin.CreateTopics(setup, topo, nil, kafka.WithLogger(log)); err != nil {
		return nil, nil, err
	}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, stateDir, kafka.WithLogger(log), kafka.WithInstance("demo"))
	if err != nil {
		return nil, nil, err
	}
	for _, r := range runners {
		if gr, ok := r.(*kafka.Gather); ok {
			g = gr
		}
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- kafka.RunAll(runCtx, runners...) }()
	return g, func() {
		stopRun()
		<-runDone
	}, nil
}

// sends is what the load sent: each request's id and send time, and how
// many sends the broker refused.
type sends struct {
	mu       sync.Mutex
	ids      []string
	at       map[string]time.Time
	sendErrs int
}

var routes = [][2]string{{"AMS", "JFK"}, {"LHR", "SFO"}, {"CDG", "NRT"}, {"FRA", "SIN"}, {"MAD", "GRU"}}

// sendLoad sends cfg.Requests flight queries on an open-loop schedule,
// calling show after each, and waits until the broker acknowledged them.
func sendLoad(ctx context.Context, topo *topology.Topology, flow *topology.Flow, cfg Config, show func(sent int)) (*sends, error) {
	sender, err := admin.NewSender(topo, kafka.WithLogger(cfg.Logger))
	if err != nil {
		return nil, err
	}
	defer sender.Close()
	l := &sends{at: make(map[string]time.Time, cfg.Requests)}
	sched := load.NewSchedule(cfg.Rate)
	for i := range cfg.Requests {
		if _, err := sched.Wait(ctx, i); err != nil {
			return nil, err
		}
		rt := routes[i%len(routes)]
		id := fmt.Sprintf("demo-%04d", i+1)
		req := &schemas.Request{RequestID: id, Flow: flow.Name, ContentType: schemas.ContentTypeJSON,
			Payload:    fmt.Appendf(nil, `{"from":%q,"to":%q,"date":"2027-03-%02d"}`, rt[0], rt[1], 1+i%28),
			Attributes: schemas.Attributes{{Key: "source", Value: "demo"}}}
		l.mu.Lock()
		l.ids = append(l.ids, id)
		l.at[id] = time.Now()
		l.mu.Unlock()
		if err := sender.Send(ctx, req, func(err error) {
			if err != nil {
				l.mu.Lock()
				l.sendErrs++
				l.mu.Unlock()
			}
		}); err != nil {
			return nil, err
		}
		show(i + 1)
	}
	if err := sender.Flush(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// awaitAll waits until every one of ids has its aggregate, or for at most
// limit, calling tick every 250ms; only the end of ctx is an error.
func awaitAll(ctx context.Context, col *collect.Collector, ids []string, limit time.Duration, tick func()) error {
	waitCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = col.Wait(waitCtx, ids...)
	}()
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return ctx.Err()
		case <-ticker.C:
			tick()
		}
	}
}
