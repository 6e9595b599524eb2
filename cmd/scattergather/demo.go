package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/scattergather/scattergather/internal/demo"
	"github.com/scattergather/scattergather/processor/gateway"
)

func cmdDemo(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "demo", "[--requests N] [--rate PER_SECOND] [--seed N] [--serve [--gateway-addr ADDR]]")
	f.logFlags()
	f.Lookup("log-level").DefValue = "warn"
	f.logLevel = "warn"
	n := f.Int("requests", 300, "requests to send")
	rate := f.Float64("rate", 100, "requests per second")
	seed := f.Uint64("seed", 1, "seed of the simulated providers")
	serveHTTP := f.Bool("serve", false, "after the report, keep the pipeline running with an HTTP gateway (see --gateway-addr) until interrupted")
	gwAddr := f.String("gateway-addr", gateway.DefaultAddr, "address of the HTTP gateway of --serve")
	if code, ok := f.parse(args); !ok {
		return code
	}
	if *n < 1 || *rate <= 0 {
		return f.usageError("--requests and --rate must be positive")
	}
	log, err := f.logger(e)
	if err != nil {
		return f.usageError("%v", err)
	}
	cfg := demo.Config{Out: e.stdout, Logger: log, Requests: *n, Rate: *rate, Seed: *seed}
	if *serveHTTP {
		cfg.Serve = *gwAddr
	}
	exactlyOnce, err := demo.Run(ctx, cfg)
	if err != nil {
		return fail(e, "demo", err)
	}
	if !exactlyOnce {
		return exitFail
	}
	return exitOK
}

// cmdProviders serves the demo's simulated providers on fixed addresses,
// for running the example topology against a real cluster (docker-compose).
func cmdProviders(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "providers", "[--listen ADDR,ADDR,ADDR] [--seed N]")
	listen := f.String("listen", "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083", "addresses of skyscanner, kayak and expedia")
	seed := f.Uint64("seed", 1, "seed of the simulated answers")
	if code, ok := f.parse(args); !ok {
		return code
	}
	addrs := strings.Split(*listen, ",")
	ps := demo.Providers(*seed)
	if len(addrs) != len(ps) {
		return f.usageError("--listen wants %d addresses", len(ps))
	}
	for i, p := range ps {
		if err := p.Start(addrs[i]); err != nil {
			return fail(e, "providers", err)
		}
		defer p.Stop()
		fmt.Fprintf(e.stdout, "provider %-10s %s\n", p.Name(), p.URL())
	}
	<-ctx.Done()
	return exitOK
}
