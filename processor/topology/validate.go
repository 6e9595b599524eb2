package topology

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Defaults applied by setDefaults.
const (
	DefaultBroker               = "127.0.0.1:9092"
	DefaultSessionTimeout       = 30 * time.Second
	DefaultTransactionTimeout   = 30 * time.Second
	DefaultClientID             = "scattergather"
	DefaultGroupPrefix          = "scattergather"
	DefaultPartitions           = 3
	DefaultMaxTasks             = 64
	DefaultMaxPayloadBytes      = 900 << 10
	DefaultMaxOpenRequests      = 1_000_000
	DefaultMaxAggregateBytes    = 900 << 10
	DefaultMaxTimeout           = time.Hour
	DefaultTickInterval         = 200 * time.Millisecond
	DefaultRebuildTimeout       = 10 * time.Minute
	DefaultCommitDelay          = 100 * time.Millisecond
	DefaultResultsRetention     = 7 * 24 * time.Hour
	DefaultMaxInFlight          = 4096
	DefaultMaxInFlightPerTarget = 1024
	DefaultMinInFlightPerTarget = 8
	DefaultDeadlineGrace        = time.Second
	DefaultHTTPBackoff          = 50 * time.Millisecond
	DefaultHTTPMaxBackoff       = time.Second
	DefaultMaxResponseBytes     = 1 << 20
	DefaultBreakerFailures      = 5
	DefaultBreakerCooldown      = 5 * time.Second
	DefaultHedgeQuantile        = 0.95
	DefaultHedgeBudget          = 0.05
	DefaultHedgeWindow          = 1000
	DefaultHedgeMinDelay        = time.Millisecond
)

// Bounds of hedge.window: the hedge needs MinHedgeSamples latencies
// before its first backup, and keeps at most MaxHedgeWindow.
const (
	MinHedgeSamples = 20
	MaxHedgeWindow  = 100_000
)

// setDefaults fills what the document left out; lines are the paths it
// wrote (nil: none).
func (t *Topology) setDefaults(lines map[string]pos) {
	k := &t.Kafka
	if len(k.Brokers) == 0 {
		k.Brokers = []string{DefaultBroker}
	}
	if k.ClientID == "" {
		k.ClientID = DefaultClientID
	}
	if k.GroupPrefix == "" {
		k.GroupPrefix = DefaultGroupPrefix
	}
	if k.ReplicationFactor == 0 {
		k.ReplicationFactor = 1
	}
	orDefault(&k.SessionTimeout.D, DefaultSessionTimeout)
	orDefault(&k.TransactionTimeout.D, DefaultTransactionTimeout)
	k.setRegistryDefaults()
	for i, f := range t.Flows {
		if f != nil {
			f.setDefaults(fmt.Sprintf("flows[%d]", i), lines)
		}
	}
}

func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (f *Flow) setDefaults(path string, lines map[string]pos) {
	tp := &f.Topics
	orDefault(&tp.Requests, f.Name+".requests")
	orDefault(&tp.Results, f.Name+".results")
	orDefault(&tp.Aggregated, f.Name+".aggregated")
	orDefault(&tp.Late, f.Name+".late")
	orDefault(&tp.DeadLetter, f.Name+".dlq")
	orDefault(&tp.ResultsRetention.D, DefaultResultsRetention)
	orDefault(&f.Partitions, DefaultPartitions)
	orDefault(&f.Fanout.Mode, FanoutTargets)
	orDefault(&f.Fanout.MaxTasks, DefaultMaxTasks)
	orDefault(&f.Strategy.Type, StrategyAll)
	orDefault(&f.Consolidate.Type, ConsolidateCollect)
	if f.Consolidate.Type == ConsolidateMerge {
		orDefault(&f.Consolidate.Order, "desc")
	}
	orDefault(&f.Limits.MaxPayloadBytes, DefaultMaxPayloadBytes)
	orDefault(&f.Limits.MaxOpenRequests, DefaultMaxOpenRequests)
	orDefault(&f.Limits.MaxAggregateBytes, DefaultMaxAggregateBytes)
	orDefault(&f.Gather.TickInterval.D, DefaultTickInterval)
	orDefault(&f.Gather.RebuildTimeout.D, DefaultRebuildTimeout)
	if f.Gather.CommitDelay == nil {
		f.Gather.CommitDelay = &Duration{DefaultCommitDelay}
	}
	orDefault(&f.Gather.ClosedRetention.D, max(addSat(f.Timeout.D, f.Timeout.D), time.Minute))
	// Within the results retention the timeout leaves, so that a
	// topology valid without the key stays valid.
	orDefault(&f.Limits.MaxTimeout.D, max(f.Timeout.D, min(DefaultMaxTimeout, f.Topics.ResultsRetention.D-f.Gather.ClosedRetention.D)))
	orDefault(&f.Worker.MaxInFlight, DefaultMaxInFlight)
	orDefault(&f.Worker.MaxInFlightPerTarget, DefaultMaxInFlightPerTarget)
	orDefault(&f.Worker.Concurrency, ConcurrencyAdaptive)
	orDefault(&f.Worker.MinInFlightPerTarget, max(1, min(DefaultMinInFlightPerTarget, f.Worker.MaxInFlightPerTarget)))
	orDefault(&f.Worker.DeadlineGrace.D, DefaultDeadlineGrace)
	orDefault(&f.Worker.Cancel, CancelDecided)
	for i, t := range f.Targets {
		if t == nil {
			continue
		}
		t.Hedge.setDefaults(fmt.Sprintf("%s.targets[%d].hedge", path, i), lines)
		orDefault(&t.Topic, f.Name+".tasks."+t.Name)
		orDefault(&t.MaxInFlight, f.Worker.MaxInFlightPerTarget)
		orDefault(&t.Concurrency, f.Worker.Concurrency)
		orDefault(&t.MinInFlight, max(1, min(f.Worker.MinInFlightPerTarget, t.MaxInFlight)))
		if rl := t.RateLimit; rl != nil && rl.PerSecond > 0 && rl.PerSecond < math.MaxInt32 {
			orDefault(&rl.Burst, max(1, int(math.Ceil(rl.PerSecond))))
		}
		if h := t.HTTP; h != nil {
			orDefault(&h.Method, "POST")
			orDefault(&h.FollowRedirects, RedirectsNever)
			orDefault(&h.Timeout.D, f.Timeout.D)
			orDefault(&h.Backoff.D, DefaultHTTPBackoff)
			orDefault(&h.MaxBackoff.D, DefaultHTTPMaxBackoff)
			orDefault(&h.MaxResponseBytes, DefaultMaxResponseBytes)
			orDefault(&h.Breaker.Cooldown.D, DefaultBreakerCooldown)
			if h.Breaker.Failures == nil {
				n := DefaultBreakerFailures
				h.Breaker.Failures = &n
			}
		}
	}
}

// setDefaults fills the keys of a hedge section that path does not write.
// A key written as 0 (or ~) stays 0, for validation to refuse: budget: 0
// must not hedge 5% of the calls.
func (h *Hedge) setDefaults(path string, lines map[string]pos) {
	if h == nil {
		return
	}
	absent := func(key string) bool {
		_, written := lines[path+"."+key]
		return !written
	}
	if absent("quantile") {
		h.Quantile = DefaultHedgeQuantile
	}
	if absent("budget") {
		h.Budget = DefaultHedgeBudget
	}
	if absent("window") {
		h.Window = DefaultHedgeWindow
	}
	if absent("min_delay") {
		h.MinDelay.D = DefaultHedgeMinDelay
	}
}

// Kafka's own rule for topic names, and a stricter one for flow and target
// names, which become parts of topic and group names.
var (
	topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	partName  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,100}$`)
	fieldPath = regexp.MustCompile(`^[^.\s]+(\.[^.\s]+)*$`)
)

type problems struct {
	list  []*Problem
	lines map[string]pos
}

func (ps *problems) add(path, format string, args ...any) {
	p := &Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	// Point at the key's node if it was written, else at the nearest parent.
	for q := path; ; {
		if at, ok := ps.lines[q]; ok {
			p.Line, p.Column = at.line, at.col
			break
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			break
		}
		q = q[:i]
	}
	ps.list = append(ps.list, p)
}

// Validate checks a topology that has its defaults and reports every
// problem at once, as an *Error. Its problems carry paths but no file or
// position: the topology may have changed since Parse read it.
func (t *Topology) Validate() error { return t.validate(nil) }

// Problem returns a problem at path of t's document (flows[0].consolidate),
// with t's file and, when t was parsed, the line and column of path or of
// its nearest parent written in the document. Callers use it to report, in
// Parse's terms, what they refuse in a topology that validated.
func (t *Topology) Problem(path, format string, args ...any) *Problem {
	ps := &problems{lines: t.lines}
	ps.add(path, format, args...)
	p := ps.list[0]
	p.File = t.File
	return p
}

// validate checks t, locating problems with lines when they are known.
func (t *Topology) validate(lines map[string]pos) error {
	ps := &problems{lines: lines}
	for i, b := range t.Kafka.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			ps.add(fmt.Sprintf("kafka.brokers[%d]", i), "want host:port, have %q", b)
		}
	}
	if t.Kafka.ReplicationFactor < 1 {
		ps.add("kafka.replication_factor", "must be at least 1")
	}
	if t.Kafka.SessionTimeout.D < time.Second {
		ps.add("kafka.session_timeout", "must be at least 1s")
	}
	if t.Kafka.TransactionTimeout.D < time.Second {
		ps.add("kafka.transaction_timeout", "must be at least 1s")
	}
	t.Kafka.SASL.validate(ps, "kafka.sasl")
	t.Kafka.TLS.validate(ps, "kafka.tls")
	t.Kafka.validateRegistry(ps)
	if len(t.Flows) == 0 {
		ps.add("flows", "at least one flow is required")
	}
	flowNames := map[string]int{}
	topicOwner := map[string]string{}
	for i, f := range t.Flows {
		path := fmt.Sprintf("flows[%d]", i)
		if f == nil {
			ps.add(path, "empty flow")
			continue
		}
		if j, dup := flowNames[f.Name]; dup && f.Name != "" {
			ps.add(path+".name", "flow %q is also flows[%d]", f.Name, j)
		}
		flowNames[f.Name] = i
		f.validate(ps, path)
		if d := f.Gather.CommitDelay; d != nil && d.D >= t.Kafka.TransactionTimeout.D {
			ps.add(path+".gather.commit_delay", "must be less than kafka.transaction_timeout (%s)", t.Kafka.TransactionTimeout.D)
		}
		for _, tp := range f.AllTopics() {
			if tp == "" {
				continue
			}
			if owner, dup := topicOwner[tp]; dup {
				ps.add(path, "topic %q is used twice (%s): flows never share topics", tp, owner)
				continue
			}
			topicOwner[tp] = path
		}
	}
	if len(ps.list) == 0 {
		return nil
	}
	return &Error{Problems: ps.list}
}

func (f *Flow) validate(ps *problems, path string) {
	if !partName.MatchString(f.Name) {
		ps.add(path+".name", "want a name of letters, digits, _ and - (at most 100), have %q", f.Name)
	}
	for _, tp := range []struct{ key, name string }{
		{"requests", f.Topics.Requests}, {"results", f.Topics.Results}, {"aggregated", f.Topics.Aggregated},
		{"late", f.Topics.Late}, {"dead_letter", f.Topics.DeadLetter},
	} {
		if !topicName.MatchString(tp.name) {
			ps.add(path+".topics."+tp.key, "invalid topic name %q", tp.name)
		}
	}
	if f.Partitions < 1 {
		ps.add(path+".partitions", "must be at least 1")
	}
	if f.Timeout.D <= 0 {
		ps.add(path+".timeout", "required: how long a request may collect answers, e.g. 2s")
	}
	if open := addSat(f.Timeout.D, f.Gather.ClosedRetention.D); f.Topics.ResultsRetention.D < open {
		ps.add(path+".topics.results_retention", "%s is shorter than the timeout plus gather.closed_retention (%s)",
			f.Topics.ResultsRetention.D, open)
	} else if open := addSat(f.Limits.MaxTimeout.D, f.Gather.ClosedRetention.D); f.Topics.ResultsRetention.D < open {
		ps.add(path+".limits.max_timeout", "%s plus gather.closed_retention (%s) exceeds topics.results_retention %s: a request could outlive its manifest",
			f.Limits.MaxTimeout.D, open, f.Topics.ResultsRetention.D)
	}
	if f.Limits.MaxTimeout.D < f.Timeout.D {
		ps.add(path+".limits.max_timeout", "%s is shorter than the timeout %s", f.Limits.MaxTimeout.D, f.Timeout.D)
	}

	switch f.Fanout.Mode {
	case FanoutTargets:
		if f.Fanout.Items != "" {
			ps.add(path+".fanout.items", "only used with mode: items")
		}
	case FanoutItems:
		if !fieldPath.MatchString(f.Fanout.Items) {
			ps.add(path+".fanout.items", "required with mode: items: the path of a JSON array in the payload, e.g. chunks")
		}
	default:
		ps.add(path+".fanout.mode", "unknown mode %q (one of targets, items)", f.Fanout.Mode)
	}
	if f.Fanout.MaxTasks < 1 {
		ps.add(path+".fanout.max_tasks", "must be at least 1")
	}

	if len(f.Targets) == 0 {
		ps.add(path+".targets", "at least one target is required")
	}
	if f.Fanout.Mode == FanoutTargets && len(f.Targets) > f.Fanout.MaxTasks {
		ps.add(path+".targets", "%d targets exceed fanout.max_tasks (%d)", len(f.Targets), f.Fanout.MaxTasks)
	}
	targetNames := map[string]int{}
	for i, t := range f.Targets {
		tpath := fmt.Sprintf("%s.targets[%d]", path, i)
		if t == nil {
			ps.add(tpath, "empty target")
			continue
		}
		if j, dup := targetNames[t.Name]; dup && t.Name != "" {
			ps.add(tpath+".name", "target %q is also targets[%d]", t.Name, j)
		}
		targetNames[t.Name] = i
		t.validate(ps, tpath)
		// A value inherited from worker.concurrency is reported there.
		if !validConcurrency(t.Concurrency) && t.Concurrency != f.Worker.Concurrency {
			ps.add(tpath+".concurrency", "unknown value %q (one of adaptive, fixed)", t.Concurrency)
		}
	}

	f.Strategy.validate(ps, path+".strategy", f)
	f.Consolidate.validate(ps, path+".consolidate")

	if f.Limits.MaxPayloadBytes < 1 {
		ps.add(path+".limits.max_payload_bytes", "must be at least 1")
	}
	if f.Limits.MaxOpenRequests < 1 {
		ps.add(path+".limits.max_open_requests", "must be at least 1")
	}
	if f.Limits.MaxAggregateBytes < 1024 {
		ps.add(path+".limits.max_aggregate_bytes", "must be at least 1KiB")
	}
	if f.Gather.TickInterval.D < time.Millisecond {
		ps.add(path+".gather.tick_interval", "must be at least 1ms")
	}
	if f.Gather.ClosedRetention.D < 0 {
		ps.add(path+".gather.closed_retention", "must not be negative")
	}
	if d := f.Gather.CommitDelay; d != nil && d.D < 0 {
		ps.add(path+".gather.commit_delay", "must not be negative")
	}
	if f.Gather.RebuildTimeout.D < time.Second {
		ps.add(path+".gather.rebuild_timeout", "must be at least 1s")
	}
	if f.Worker.MaxInFlight < 1 {
		ps.add(path+".worker.max_in_flight", "must be at least 1")
	}
	if f.Worker.DeadlineGrace.D < 0 {
		ps.add(path+".worker.deadline_grace", "must not be negative")
	}
	if f.Worker.MaxInFlightPerTarget < 1 {
		ps.add(path+".worker.max_in_flight_per_target", "must be at least 1")
	}
	if !validConcurrency(f.Worker.Concurrency) {
		ps.add(path+".worker.concurrency", "unknown value %q (one of adaptive, fixed)", f.Worker.Concurrency)
	}
	if f.Worker.MinInFlightPerTarget < 1 {
		ps.add(path+".worker.min_in_flight_per_target", "must be at least 1")
	} else if f.Worker.MaxInFlightPerTarget >= 1 && f.Worker.MinInFlightPerTarget > f.Worker.MaxInFlightPerTarget {
		ps.add(path+".worker.min_in_flight_per_target", "%d exceeds max_in_flight_per_target (%d)", f.Worker.MinInFlightPerTarget, f.Worker.MaxInFlightPerTarget)
	}
	if f.Worker.Cancel != CancelDecided && f.Worker.Cancel != CancelNever {
		ps.add(path+".worker.cancel", "unknown value %q (one of decided, never)", f.Worker.Cancel)
	}
}

func validConcurrency(s string) bool {
	return s == ConcurrencyAdaptive || s == ConcurrencyFixed
}

// addSat returns a+b, or the largest Duration when the sum overflows (both
// are non-negative in a topology that validates; a negative one is
// reported elsewhere).
func addSat(a, b time.Duration) time.Duration {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (t *Target) validate(ps *problems, path string) {
	if !partName.MatchString(t.Name) {
		ps.add(path+".name", "want a name of letters, digits, _ and - (at most 100), have %q", t.Name)
	}
	if !topicName.MatchString(t.Topic) {
		ps.add(path+".topic", "invalid topic name %q", t.Topic)
	}
	if t.MaxInFlight < 1 {
		ps.add(path+".max_in_flight", "must be at least 1")
	}
	if t.MinInFlight < 1 {
		ps.add(path+".min_in_flight", "must be at least 1")
	} else if t.MaxInFlight >= 1 && t.MinInFlight > t.MaxInFlight {
		ps.add(path+".min_in_flight", "%d exceeds max_in_flight (%d)", t.MinInFlight, t.MaxInFlight)
	}
	if rl := t.RateLimit; rl != nil {
		if !(rl.PerSecond > 0) || math.IsInf(rl.PerSecond, 0) {
			ps.add(path+".rate_limit.per_second", "must be positive")
		}
		if rl.Burst < 0 {
			ps.add(path+".rate_limit.burst", "must be at least 1")
		}
	}
	t.Hedge.validate(ps, path+".hedge")
	h := t.HTTP
	if h == nil {
		return
	}
	hp := path + ".http"
	switch {
	case h.URL == "" && h.Endpoints == nil:
		ps.add(hp+".url", "required: the provider's URL (or endpoints: a list of them)")
	case h.URL != "" && h.Endpoints != nil:
		ps.add(hp+".endpoints", "give url or endpoints, not both")
	case h.Endpoints != nil:
		if len(h.Endpoints) == 0 {
			ps.add(hp+".endpoints", "at least one URL is required")
		}
		seen := map[string]int{}
		for i, e := range h.Endpoints {
			ep := fmt.Sprintf("%s.endpoints[%d]", hp, i)
			checkURL(ps, ep, e)
			if j, dup := seen[e]; dup {
				ps.add(ep, "the same URL as endpoints[%d]", j)
			}
			seen[e] = i
		}
	default:
		checkURL(ps, hp+".url", h.URL)
	}
	if !slices.Contains([]string{"POST", "PUT", "GET"}, h.Method) {
		ps.add(hp+".method", "unknown method %q (one of POST, PUT, GET)", h.Method)
	}
	if h.FollowRedirects != RedirectsNever && h.FollowRedirects != RedirectsSameHost {
		ps.add(hp+".follow_redirects", "unknown value %q (one of never, same_host)", h.FollowRedirects)
	}
	if h.Timeout.D <= 0 {
		ps.add(hp+".timeout", "must be positive")
	}
	if h.Retries < 0 {
		ps.add(hp+".retries", "must not be negative")
	}
	if h.Backoff.D < 0 || h.MaxBackoff.D < h.Backoff.D {
		ps.add(hp+".backoff", "want 0 <= backoff <= max_backoff")
	}
	if h.MaxResponseBytes < 1 {
		ps.add(hp+".max_response_bytes", "must be at least 1")
	}
	if h.Breaker.Threshold() < 0 {
		ps.add(hp+".circuit_breaker.failures", "must not be negative (0 disables the breaker)")
	}
	for name := range h.Headers {
		if name == "" || strings.ContainsAny(name, " :\r\n") {
			ps.add(hp+".headers", "invalid header name %q", name)
		}
	}
}

// checkURL reports at path a URL the HTTP caller cannot call, showing it
// redacted.
func checkURL(ps *problems, path, s string) {
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.add(path, "want an absolute http or https URL, have %q", RedactURL(s))
	}
}

// validate checks a hedge section with its defaults.
func (h *Hedge) validate(ps *problems, path string) {
	if h == nil {
		return
	}
	if !(h.Quantile > 0 && h.Quantile < 1) {
		ps.add(path+".quantile", "want a number between 0 and 1 (0.95 hedges calls slower than 95%% of the recent ones), have %v", h.Quantile)
	}
	if !(h.Budget > 0 && h.Budget <= 1) {
		ps.add(path+".budget", "want a share of the calls above 0 and at most 1, have %v (leave the hedge section out for no hedging)", h.Budget)
	}
	if h.Window < MinHedgeSamples || h.Window > MaxHedgeWindow {
		ps.add(path+".window", "want %d to %d calls, have %d", MinHedgeSamples, MaxHedgeWindow, h.Window)
	}
	if h.MinDelay.D < 0 {
		ps.add(path+".min_delay", "must not be negative")
	}
}

// validate checks the SASL settings. Messages name the keys, never the
// password.
func (s *SASL) validate(ps *problems, path string) {
	if s == nil {
		return
	}
	mechanisms := []string{SASLPlain, SASLScramSHA256, SASLScramSHA512}
	switch {
	case s.Mechanism == "":
		ps.add(path+".mechanism", "required with sasl: one of %s", strings.Join(mechanisms, ", "))
	case slices.Contains(mechanisms, strings.ToUpper(s.Mechanism)) && !slices.Contains(mechanisms, s.Mechanism):
		ps.add(path+".mechanism", "write the mechanism in upper case, as Kafka does (one of %s)", strings.Join(mechanisms, ", "))
	case !slices.Contains(mechanisms, s.Mechanism):
		// The value is not quoted: nothing under kafka.sasl is.
		ps.add(path+".mechanism", "unknown mechanism (one of %s)", strings.Join(mechanisms, ", "))
	}
	if s.Username == "" {
		ps.add(path+".username", "required with sasl")
	}
	if s.Password == "" {
		ps.add(path+".password", "required with sasl (best written as ${ENV_VAR})")
	}
}

// maxPEMBytes bounds the files of kafka.tls that validation reads.
const maxPEMBytes = 1 << 20

// validate checks the TLS settings of an enabled TLS: that the files exist
// and parse. Messages name the files but never show their contents.
func (t *TLS) validate(ps *problems, path string) {
	if !t.On() {
		return
	}
	if t.CAFile != "" {
		if b, ok := readPEM(ps, path+".ca_file", t.CAFile); ok {
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				ps.add(path+".ca_file", "no PEM certificate in %s", t.CAFile)
			}
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		ps.add(path+".key_file", "required with cert_file: the client certificate's private key")
	case t.CertFile == "" && t.KeyFile != "":
		ps.add(path+".cert_file", "required with key_file: the client certificate")
	case t.CertFile != "":
		certPEM, certOK := readPEM(ps, path+".cert_file", t.CertFile)
		keyPEM, keyOK := readPEM(ps, path+".key_file", t.KeyFile)
		if certOK && keyOK {
			checkKeyPair(ps, path, t.CertFile, t.KeyFile, certPEM, keyPEM)
		}
	}
}

// readPEM reads a file of kafka.tls, reporting why it cannot at key. It
// reads regular files only (a FIFO would block, a device never end), and at
// most maxPEMBytes (/proc files claim size 0).
func readPEM(ps *problems, key, file string) ([]byte, bool) {
	fi, err := os.Stat(file)
	if err != nil {
		ps.add(key, "cannot read %s: %s", file, pathErr(err))
		return nil, false
	}
	if !fi.Mode().IsRegular() {
		ps.add(key, "%s is not a regular file", file)
		return nil, false
	}
	f, err := os.Open(file)
	if err != nil {
		ps.add(key, "cannot read %s: %s", file, pathErr(err))
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMBytes+1))
	switch {
	case err != nil:
		ps.add(key, "cannot read %s: %s", file, pathErr(err))
		return nil, false
	case len(b) > maxPEMBytes:
		ps.add(key, "%s is larger than 1MiB: not a PEM file", file)
		return nil, false
	}
	return b, true
}

// pathErr is the reason of a file error without its path, which the
// message names already.
func pathErr(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// checkKeyPair checks that certPEM holds a certificate and keyPEM an
// unencrypted private key that belongs to it. Its messages are its own:
// none quotes the files.
func checkKeyPair(ps *problems, path, certFile, keyFile string, certPEM, keyPEM []byte) {
	var haveCert, haveKey, encrypted bool
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				ps.add(path+".cert_file", "%s: invalid certificate: %v", certFile, err)
				return
			}
			haveCert = true
			break
		}
	}
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			haveKey = true
			encrypted = b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] == "4,ENCRYPTED"
			break
		}
	}
	switch {
	case !haveCert:
		ps.add(path+".cert_file", "no PEM certificate in %s", certFile)
	case !haveKey:
		ps.add(path+".key_file", "no PEM private key in %s", keyFile)
	case encrypted:
		ps.add(path+".key_file", "the private key in %s is encrypted: give it unencrypted (e.g. openssl pkey -in KEY -out KEY.plain)", keyFile)
	default:
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			if strings.Contains(err.Error(), "does not match") {
				ps.add(path+".key_file", "the private key in %s does not belong to the certificate in cert_file %s", keyFile, certFile)
			} else {
				ps.add(path+".key_file", "cannot use the private key in %s with cert_file %s (want PKCS#1, PKCS#8 or SEC 1 PEM)", keyFile, certFile)
			}
		}
	}
}

// RedactURL returns s fit for a message: its user information and its
// query are replaced by REDACTED and its fragment is dropped
// (https://REDACTED@host/path?REDACTED), so that a password or an API key
// written in a URL, often from ${VAR}, never reaches an error, a log line or
// a topic. A string that does not parse as a URL is shown up to its query,
// or not at all if it holds an @ (user information not recognised as such,
// as in "user:pw@host/x"). Scheme, host and path are kept: they say which
// provider is meant.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		head, _, _ := strings.Cut(s, "#")
		head, _, hasQuery := strings.Cut(head, "?")
		if strings.Contains(head, "@") {
			return "(unparseable URL)"
		}
		if hasQuery {
			head += "?REDACTED"
		}
		return head
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	u.Fragment, u.RawFragment = "", ""
	// Without a scheme ("pw@host/x") or with an opaque one
	// ("mailto:user:pw@host") the user information is not parsed as such.
	if u.Host == "" && strings.Contains(u.Opaque+u.Path, "@") {
		return "(unparseable URL)"
	}
	return u.String()
}

func (s *Strategy) validate(ps *problems, path string, f *Flow) {
	switch s.Type {
	case StrategyAll, StrategyFirst, StrategyTimeout:
		if s.Quorum != (Quorum{}) {
			ps.add(path+".quorum", "only used with type: quorum")
		}
	case StrategyQuorum:
		switch {
		case s.Quorum.Majority:
		case s.Quorum.N < 1:
			ps.add(path+".quorum", "required with type: quorum: a number of OK answers (at least 1) or majority")
		case f.Fanout.Mode == FanoutTargets && s.Quorum.N > len(f.Targets):
			ps.add(path+".quorum", "%d exceeds the %d targets: the quorum could never be reached", s.Quorum.N, len(f.Targets))
		}
	default:
		ps.add(path+".type", "unknown strategy %q (one of all, first, quorum, timeout)", s.Type)
	}
	if s.MaxFailures != nil && *s.MaxFailures < 0 {
		ps.add(path+".max_failures", "must not be negative (leave it out for no limit)")
	}
}

func (c *Consolidate) validate(ps *problems, path string) {
	needField := func() {
		if !fieldPath.MatchString(c.Field) {
			ps.add(path+".field", "required with type: %s: the JSON path of the value, e.g. price", c.Type)
		}
	}
	unused := func(name, v string) {
		if v != "" {
			ps.add(path+"."+name, "not used with type: %s", c.Type)
		}
	}
	switch c.Type {
	case ConsolidateCollect:
		unused("field", c.Field)
		unused("path", c.Path)
	case ConsolidateMin, ConsolidateMax, ConsolidateVote, ConsolidateSum:
		needField()
		unused("path", c.Path)
		unused("key", c.Key)
		unused("sort", c.Sort)
	case ConsolidateMerge:
		unused("field", c.Field)
		if !fieldPath.MatchString(c.Path) {
			ps.add(path+".path", "required with type: merge: the JSON path of the list to merge, e.g. hits")
		}
		if c.Key != "" && !fieldPath.MatchString(c.Key) {
			ps.add(path+".key", "invalid field path %q", c.Key)
		}
		if c.Sort != "" && !fieldPath.MatchString(c.Sort) {
			ps.add(path+".sort", "invalid field path %q", c.Sort)
		}
		if c.Order != "asc" && c.Order != "desc" {
			ps.add(path+".order", "want asc or desc, have %q", c.Order)
		}
		if c.Top < 0 {
			ps.add(path+".top", "must not be negative (0 keeps all)")
		}
	default:
		check, ok := registeredConsolidation(c.Type)
		switch {
		case !ok:
			ps.add(path+".type", "unknown consolidation %q (one of %s; others are registered in Go with gather.Register)", c.Type, knownConsolidations())
		case check != nil:
			if err := check(*c); err != nil {
				ps.add(path, "%s", err.Error())
			}
		}
	}
	if c.Type != ConsolidateMerge {
		unused("order", c.Order)
		if c.Top != 0 {
			ps.add(path+".top", "not used with type: %s", c.Type)
		}
	}
}
