package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scattergather/scattergather/internal/gctune"
	"github.com/scattergather/scattergather/internal/metrics"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/gateway"
	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/observe"
	"github.com/scattergather/scattergather/processor/scatter"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

func cmdValidate(_ context.Context, e *env, args []string) int {
	f := newFlags(e, "validate", "[--topology FILE]")
	f.topologyFlags()
	if code, ok := f.parse(args); !ok {
		return code
	}
	if f.NArg() > 0 {
		return f.usageError("unexpected argument %q", f.Arg(0))
	}
	t, err := f.load(e)
	if err == nil {
		err = buildFlows(t)
	}
	if err != nil {
		var te *topology.Error
		if errors.As(err, &te) {
			for _, p := range te.Problems {
				fmt.Fprintln(e.stderr, p.Error())
			}
			fmt.Fprintf(e.stderr, "%s: %d problem(s)\n", f.topology, len(te.Problems))
			return exitFail
		}
		return fail(e, "validate", err)
	}
	var names []string
	for _, fl := range t.Flows {
		names = append(names, fl.Name)
	}
	fmt.Fprintf(e.stdout, "%s: OK (%d flow(s): %s)\n", f.topology, len(t.Flows), strings.Join(names, ", "))
	return exitOK
}

// buildFlows builds from each flow what run builds before it connects: the
// gather's fold with its consolidation and the scatter's planner (for the
// partitions that topics create makes). What they refuse is returned as a
// *topology.Error located at the flow, so validate refuses whatever run
// would refuse at start.
func buildFlows(t *topology.Topology) error {
	var ps []*topology.Problem
	for i, fl := range t.Flows {
		path := fmt.Sprintf("flows[%d]", i)
		if _, err := gather.NewFlow(fl, nil); err != nil {
			ps = append(ps, t.Problem(path, "%s", err.Error()))
		}
		if _, err := scatter.NewPlanner(fl, int32(fl.Partitions), nil); err != nil {
			ps = append(ps, t.Problem(path, "%s", err.Error()))
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return &topology.Error{Problems: ps}
}

func cmdRun(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "run", "--role scatter|worker|gather|gateway|all [--topology FILE] [--flow NAMES] [flags]")
	f.topologyFlags()
	f.logFlags()
	role := f.String("role", "", "role to run: scatter, worker, gather, gateway (the HTTP gateway) or all (required)")
	flows := f.String("flow", "", "comma-separated flows to run (default: every flow)")
	stateDir := f.String("state-dir", "state", "directory of the gather's Pebble state")
	instance := f.String("instance-id", "", "stable identity of this instance: transactional ids and static group membership (default: host name)")
	targets := f.String("targets", "", "comma-separated targets a worker serves (default: every target with an http section)")
	allowLost := f.Bool("allow-lost-requests", false, "gather: when retention deleted the records a rebuild needs, rebuild from the log start and give up the requests opened before it (default: refuse, saying what would be lost)")
	httpAddr := f.String("http-addr", defaultHTTPAddr, "address of /metrics, /healthz and /readyz: loopback by default (taken: an ephemeral port); 0.0.0.0:8080 for Prometheus and probes from other hosts (empty: none)")
	gw := f.gatewayFlags()
	if code, ok := f.parse(args); !ok {
		return code
	}
	httpAddrGiven := false
	f.Visit(func(fl *flag.Flag) {
		httpAddrGiven = httpAddrGiven || fl.Name == "http-addr"
		gw.addrGiven = gw.addrGiven || fl.Name == "gateway-addr"
	})
	switch *role {
	case kafka.RoleScatter, kafka.RoleWorker, kafka.RoleGather, kafka.RoleAll, gateway.Role:
	case "":
		return f.usageError("--role is required")
	default:
		return f.usageError("unknown role %q", *role)
	}
	if f.NArg() > 0 {
		return f.usageError("unexpected argument %q", f.Arg(0))
	}
	log, err := f.logger(e)
	if err != nil {
		return f.usageError("%v", err)
	}
	gc := gctune.Apply()
	log.Info("garbage collector", "gogc", gc.Percent, "gogc_from", gc.PercentFrom, "memory_limit_bytes", gc.Limit, "memory_limit_from", gc.LimitFrom)
	t, err := f.load(e)
	if err != nil {
		return fail(e, "run", err)
	}
	fl, err := selectFlows(t, *flows)
	if err != nil {
		return fail(e, "run", err)
	}
	codec, _, err := codecFor(ctx, t, fl, false)
	if err != nil {
		return fail(e, "run", err)
	}
	m := metrics.New()
	opts := []kafka.RoleOpt{kafka.WithLogger(log), kafka.WithHooks(m), kafka.WithCodec(codec)}
	if *allowLost {
		opts = append(opts, kafka.WithLostRequestsAllowed())
	}
	if *instance != "" {
		opts = append(opts, kafka.WithInstance(*instance))
	}
	if *targets != "" {
		opts = append(opts, kafka.WithTargets(strings.Split(*targets, ",")...))
	}
	var ln net.Listener
	if *httpAddr != "" {
		if ln, err = listenOps(*httpAddr, httpAddrGiven, log); err != nil {
			return fail(e, "run", err)
		}
		defer ln.Close()
	}
	var runners []kafka.Runner
	if *role != gateway.Role {
		if runners, err = kafka.Roles(t, fl, *role, *stateDir, opts...); err != nil {
			return fail(e, "run", err)
		}
	}
	if *role == gateway.Role || (*role == kafka.RoleAll && *gw.addr != "") {
		if *gw.addr == "" {
			return f.usageError("--role gateway needs a --gateway-addr")
		}
		gopts, gln, err := gw.options(e, log)
		if err != nil {
			return fail(e, "run", err)
		}
		defer gln.Close()
		g, err := gateway.New(t, fl, append(gopts, gateway.WithHooks(m), gateway.WithKafkaOptions(kafkaOpts(opts)...))...)
		if err != nil {
			return fail(e, "run", err)
		}
		runners = append(runners, g)
	}
	if ln != nil {
		srv := &http.Server{Handler: observe.Handler(m.Registry, runners), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	}
	log.Info("running", "role", *role, "flows", len(fl), "brokers", strings.Join(t.Kafka.Brokers, ","))
	if err := kafka.RunAll(ctx, runners...); err != nil {
		return fail(e, "run", err)
	}
	log.Info("stopped")
	return exitOK
}

// defaultHTTPAddr is where run serves /metrics, /healthz and /readyz when
// --http-addr is not given: loopback, as these are for the host's own
// Prometheus agent and probes; a container passes 0.0.0.0:8080.
const defaultHTTPAddr = "127.0.0.1:8080"

// listenOps opens the listener of the operations server. An address given
// with --http-addr that cannot be bound fails the command; the default one,
// when another process (such as a second role on the same host) holds it,
// gives way to an ephemeral loopback port, with a warning naming it.
func listenOps(addr string, given bool, log *slog.Logger) (net.Listener, error) {
	return listenFlag("--http-addr", addr, given, log)
}

// listenFlag opens the listener of the address of flag name, as listenOps
// does.
func listenFlag(name, addr string, given bool, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case !errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("%s %s: %w", name, addr, err)
	case given:
		return nil, fmt.Errorf("%s %s is already in use (another role on this host?): give each process its own %s, or %s \"\" for none: %w", name, addr, name, name, err)
	}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: %s is in use and no ephemeral loopback port is free: %w", name, addr, err)
	}
	log.Warn("the default "+name+" is in use (another role on this host?): serving on an ephemeral loopback port; give each process its own "+name,
		"default", addr, "addr", ln.Addr().String())
	return ln, nil
}

func cmdTopics(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "topics", "create|check [--topology FILE] [--flow NAMES]")
	f.topologyFlags()
	flows := f.String("flow", "", "comma-separated flows (default: every flow)")
	var action string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	if code, ok := f.parse(args); !ok {
		return code
	}
	if action == "" && f.NArg() == 1 {
		action = f.Arg(0)
	} else if f.NArg() > 0 {
		return f.usageError("unexpected argument %q", f.Arg(0))
	}
	if action != "create" && action != "check" {
		return f.usageError("want one action: create or check")
	}
	t, err := f.load(e)
	if err != nil {
		return fail(e, "topics", err)
	}
	fl, err := selectFlows(t, *flows)
	if err != nil {
		return fail(e, "topics", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if action == "check" {
		var errs []error
		for _, flow := range fl {
			if err := kafka.CheckTopics(ctx, t, flow); err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(e.stdout, "flow %s: topics OK\n", flow.Name)
		}
		if len(errs) > 0 {
			return fail(e, "topics", errors.Join(errs...))
		}
		return exitOK
	}
	res, err := admin.CreateTopics(ctx, t, fl)
	if err != nil {
		return fail(e, "topics", err)
	}
	code := exitOK
	for _, r := range res {
		switch {
		case r.Err != nil:
			fmt.Fprintf(e.stdout, "%-40s FAILED: %v\n", r.Topic, r.Err)
			code = exitFail
		case r.Created:
			fmt.Fprintf(e.stdout, "%-40s created (%d partitions)\n", r.Topic, r.Partitions)
		default:
			fmt.Fprintf(e.stdout, "%-40s exists\n", r.Topic)
		}
	}
	for _, flow := range fl {
		if err := kafka.CheckTopics(ctx, t, flow); err != nil {
			fmt.Fprintln(e.stderr, err)
			code = exitFail
		}
	}
	if t.Kafka.SchemaRegistry != nil {
		c, subjects, err := codecFor(ctx, t, fl, true)
		if err != nil {
			return fail(e, "topics", err)
		}
		for _, sk := range subjects {
			fmt.Fprintf(e.stdout, "%-40s schema %s, id %d\n", sk.Subject, sk.Kind, c.SchemaID(sk.Kind))
		}
	}
	return code
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func cmdSend(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "send", "--flow NAME [--id ID] [--attr k=v]... [PAYLOAD_JSON]\n\nWithout PAYLOAD_JSON, each line of standard input is one payload\n(or, with --envelope, one {\"request_id\", \"payload\", \"attributes\"} object).")
	f.topologyFlags()
	flowName := f.String("flow", "", "flow to send to (required)")
	id := f.String("id", "", "request id of a single payload (default: random)")
	envelope := f.Bool("envelope", false, "input lines are {\"request_id\",\"payload\",\"attributes\"} objects")
	var attrs attrFlag
	f.Var(&attrs, "attr", "attribute `key=value` of every request (repeatable)")
	if code, ok := f.parse(args); !ok {
		return code
	}
	if *flowName == "" {
		return f.usageError("--flow is required")
	}
	if f.NArg() > 1 {
		return f.usageError("want at most one payload argument")
	}
	t, err := f.load(e)
	if err != nil {
		return fail(e, "send", err)
	}
	if t.Flow(*flowName) == nil {
		return fail(e, "send", fmt.Errorf("no flow %q in %s", *flowName, f.topology))
	}
	codec, _, err := codecFor(ctx, t, []*topology.Flow{t.Flow(*flowName)}, false)
	if err != nil {
		return fail(e, "send", err)
	}
	s, err := admin.NewSender(t, kafka.WithCodec(codec))
	if err != nil {
		return fail(e, "send", err)
	}
	defer s.Close()

	var (
		mu     sync.Mutex
		sent   int
		failed error
	)
	done := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = errors.Join(failed, err)
			return
		}
		sent++
	}
	toRequest := func(line []byte) (*schemas.Request, error) {
		req := &schemas.Request{Flow: *flowName, ContentType: schemas.ContentTypeJSON}
		am := map[string]string{}
		if *envelope {
			var env struct {
				RequestID  string            `json:"request_id"`
				Payload    json.RawMessage   `json:"payload"`
				Attributes map[string]string `json:"attributes"`
			}
			if err := json.Unmarshal(line, &env); err != nil {
				return nil, fmt.Errorf("envelope: %w", err)
			}
			req.RequestID, req.Payload = env.RequestID, env.Payload
			for k, v := range env.Attributes {
				am[k] = v
			}
		} else {
			if !json.Valid(line) {
				return nil, errors.New("payload is not valid JSON")
			}
			req.Payload = line
		}
		for k, v := range attrs {
			am[k] = v
		}
		req.Attributes = schemas.AttributesOf(am)
		if req.RequestID == "" {
			req.RequestID = newID()
		}
		return req, nil
	}
	emit := func(line []byte) error {
		req, err := toRequest(line)
		if err != nil {
			return err
		}
		if err := s.Send(ctx, req, done); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, req.RequestID)
		return nil
	}
	if f.NArg() == 1 {
		line := []byte(f.Arg(0))
		if *id != "" && !*envelope {
			req, err := toRequest(line)
			if err != nil {
				return fail(e, "send", err)
			}
			req.RequestID = *id
			if err := s.Send(ctx, req, done); err != nil {
				return fail(e, "send", err)
			}
			fmt.Fprintln(e.stdout, req.RequestID)
		} else if err := emit(line); err != nil {
			return fail(e, "send", err)
		}
	} else {
		sc := bufio.NewScanner(e.stdin)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		n := 0
		for sc.Scan() {
			n++
			line := []byte(strings.TrimSpace(sc.Text()))
			if len(line) == 0 {
				continue
			}
			if err := emit(line); err != nil {
				return fail(e, "send", fmt.Errorf("line %d: %w", n, err))
			}
		}
		if err := sc.Err(); err != nil {
			return fail(e, "send", err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		return fail(e, "send", err)
	}
	if failed != nil {
		return fail(e, "send", failed)
	}
	fmt.Fprintf(e.stderr, "sent %d request(s) to %s\n", sent, t.Flow(*flowName).Topics.Requests)
	return exitOK
}

type attrFlag map[string]string

func (a *attrFlag) String() string { return fmt.Sprint(map[string]string(*a)) }

func (a *attrFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, have %q", s)
	}
	if *a == nil {
		*a = attrFlag{}
	}
	(*a)[k] = v
	return nil
}

func cmdTail(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "tail", "--flow NAME [--from start|end] [-n COUNT] [--timeout DURATION]")
	f.topologyFlags()
	flowName := f.String("flow", "", "flow whose aggregates to print (required)")
	from := f.String("from", "start", "where to begin: start or end")
	count := f.Int("n", 0, "stop after COUNT aggregates (0: follow until interrupted)")
	timeout := f.Duration("timeout", 0, "stop after this long (0: no limit)")
	if code, ok := f.parse(args); !ok {
		return code
	}
	if *flowName == "" {
		return f.usageError("--flow is required")
	}
	if *from != "start" && *from != "end" {
		return f.usageError("--from must be start or end")
	}
	t, err := f.load(e)
	if err != nil {
		return fail(e, "tail", err)
	}
	fl := t.Flow(*flowName)
	if fl == nil {
		return fail(e, "tail", fmt.Errorf("no flow %q in %s", *flowName, f.topology))
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	codec, _, err := codecFor(ctx, t, []*topology.Flow{fl}, false)
	if err != nil {
		return fail(e, "tail", err)
	}
	r, err := admin.NewReader(t, fl.Topics.Aggregated, *from == "start")
	if err != nil {
		return fail(e, "tail", err)
	}
	defer r.Close()
	enc := json.NewEncoder(e.stdout)
	n := 0
	for *count == 0 || n < *count {
		recs, err := r.Poll(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "scattergather tail: %v\n", err)
		}
		for _, rec := range recs {
			var a schemas.Aggregate
			if err := codec.DecodeInto(rec.Value, &a); err != nil {
				fmt.Fprintf(e.stderr, "scattergather tail: offset %d/%d: %v\n", rec.Partition, rec.Offset, err)
				continue
			}
			if err := enc.Encode(&a); err != nil {
				return fail(e, "tail", err)
			}
			if n++; *count > 0 && n >= *count {
				break
			}
		}
	}
	if *count > 0 && n < *count {
		return fail(e, "tail", fmt.Errorf("%d of %d aggregates before the timeout", n, *count))
	}
	return exitOK
}

func cmdReplay(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "replay", "--flow NAME --stage scatter|gather --to earliest|RFC3339|OFFSET [--dry-run]")
	f.topologyFlags()
	flowName := f.String("flow", "", "flow to replay (required)")
	stage := f.String("stage", "", "stage to replay: scatter or gather (required)")
	to := f.String("to", "", "where to restart: earliest, an RFC 3339 time, or an offset (required)")
	dryRun := f.Bool("dry-run", false, "print the plan and change nothing")
	removeStatic := f.String("remove-static", "", "comma-separated instance ids of stopped static members to remove from the group first")
	if code, ok := f.parse(args); !ok {
		return code
	}
	switch {
	case *flowName == "":
		return f.usageError("--flow is required")
	case *stage != kafka.RoleScatter && *stage != kafka.RoleGather:
		return f.usageError("--stage must be scatter or gather")
	case *to == "":
		return f.usageError("--to is required")
	case f.NArg() > 0:
		return f.usageError("unexpected argument %q", f.Arg(0))
	}
	t, err := f.load(e)
	if err != nil {
		return fail(e, "replay", err)
	}
	fl := t.Flow(*flowName)
	if fl == nil {
		return fail(e, "replay", fmt.Errorf("no flow %q in %s", *flowName, f.topology))
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	plan, err := admin.PlanReplay(ctx, t, fl, *stage, *to)
	if err != nil {
		return fail(e, "replay", err)
	}
	fmt.Fprint(e.stdout, plan)
	if *dryRun {
		fmt.Fprintln(e.stdout, "dry run: nothing changed")
		return exitOK
	}
	var opts []admin.ApplyOption
	if *removeStatic != "" {
		opts = append(opts, admin.RemoveStaticMembers(strings.Split(*removeStatic, ",")...))
	}
	if err := plan.Apply(ctx, opts...); err != nil {
		var le *admin.LiveMembersError
		if errors.As(err, &le) && len(le.Static) > 0 {
			fmt.Fprintf(e.stderr, "replay: %v\n", err)
			fmt.Fprintf(e.stderr, "Static members stay in the group after a clean stop until kafka.session_timeout passes, so that a restarted instance takes its partitions back at once.\n")
			fmt.Fprintf(e.stderr, "Once every %s instance is stopped, remove them and replay with:\n  %s\n", *stage,
				replayCommand(f.topology, f.brokers, *flowName, *stage, *to, le.Static))
			return exitFail
		}
		return fail(e, "replay", err)
	}
	fmt.Fprintf(e.stdout, "offsets of %s reset.", plan.Group)
	if *stage == kafka.RoleGather {
		fmt.Fprintf(e.stdout, " Every gather instance discards its local state (epoch %s) and folds again from the new offsets;", plan.Epoch)
		fmt.Fprintf(e.stdout, " aggregates are written again, byte for byte, for the requests whose manifests follow them.")
	}
	fmt.Fprintln(e.stdout, " Start the stage's instances.")
	return exitOK
}

// replayCommand is the replay command line that removes the static members
// ids first, each argument quoted for a POSIX shell when it needs it.
func replayCommand(topologyFile, brokers, flow, stage, to string, ids []string) string {
	args := []string{"scattergather", "replay", "--topology", topologyFile}
	if brokers != "" {
		args = append(args, "--brokers", brokers)
	}
	args = append(args, "--flow", flow, "--stage", stage, "--to", to, "--remove-static", strings.Join(ids, ","))
	for i, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.,:/=@+", r))
		}) {
			args[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(args, " ")
}
