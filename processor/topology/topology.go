package topology

import (
	"fmt"
	"time"
)

// Topology is a parsed topology.yaml: the Kafka connection and the flows.
// Load returns it with defaults applied and validated; treat it as
// read-only afterwards (it is then safe to share between goroutines).
type Topology struct {
	Kafka Kafka   `yaml:"kafka"`
	Flows []*Flow `yaml:"flows"`

	// File is the path the topology was read from, for messages.
	File string `yaml:"-"`

	// lines locates each path of the document Parse read.
	lines map[string]pos
}

// Kafka holds the connection settings shared by every role.
type Kafka struct {
	// Brokers are the seed brokers. Default: 127.0.0.1:9092.
	Brokers []string `yaml:"brokers"`
	// ClientID is sent to the brokers. Default: scattergather.
	ClientID string `yaml:"client_id"`
	// GroupPrefix prefixes every consumer group and transactional id.
	// Default: scattergather.
	GroupPrefix string `yaml:"group_prefix"`
	// ReplicationFactor of the topics that `topics create` makes. Default: 1;
	// use 3 on a production cluster.
	ReplicationFactor int `yaml:"replication_factor"`
	// SessionTimeout is how long the group waits for a silent member. With
	// static membership a stopped instance keeps its partitions that long
	// unless an instance with its identity comes back. Default 30s; the
	// broker bounds it (group.min.session.timeout.ms, 6s by default).
	SessionTimeout Duration `yaml:"session_timeout"`
	// TransactionTimeout bounds how long a crashed instance's open
	// transaction holds back read_committed readers when no instance with
	// its identity restarts. Default 30s.
	TransactionTimeout Duration `yaml:"transaction_timeout"`
	// SASL authenticates every client. Default: none. With TLS it is
	// SASL_SSL, without it SASL_PLAINTEXT (the password, with PLAIN, then
	// crosses the network in clear).
	SASL *SASL `yaml:"sasl"`
	// TLS encrypts every connection and, with a client certificate,
	// authenticates the client (mutual TLS). Default: plaintext.
	TLS *TLS `yaml:"tls"`
	// Encoding of the records the roles write: single-object (default) or
	// registry (the schema registry's framing; needs schema_registry).
	// Either way the roles read both framings once schema_registry is set.
	Encoding string `yaml:"encoding"`
	// SchemaRegistry is the schema registry of the Avro schemas (see
	// registry.go). Default: none.
	SchemaRegistry *SchemaRegistry `yaml:"schema_registry"`
}

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL holds the SASL credentials of the clients. Validation requires all
// three fields. Messages and String never show the password.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, as the broker's
	// sasl.enabled.mechanisms spells it.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password is best given as ${ENV_VAR}.
	Password string `yaml:"password"`
}

// String describes s without its password, so that printing a topology
// (%v, %+v) does not show it.
func (s SASL) String() string {
	pw := "unset"
	if s.Password != "" {
		pw = "REDACTED"
	}
	return fmt.Sprintf("{Mechanism:%s Username:%s Password:%s}", s.Mechanism, s.Username, pw)
}

// TLS configures TLS to the brokers. Relative paths are read from the
// working directory. Validation reads and parses the files.
type TLS struct {
	// Enabled turns TLS on; it defaults to true when any other key of tls
	// is set, so `tls: {ca_file: ca.pem}` is enough. enabled: false turns
	// TLS off whatever the other keys say.
	Enabled *bool `yaml:"enabled"`
	// CAFile is a PEM file of the CAs that the brokers' certificates must
	// chain to. Default: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the PEM client certificate (with its
	// intermediates) and private key, for brokers that require mutual TLS
	// (ssl.client.auth=required). Both or neither; the key unencrypted.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked in the brokers' certificates.
	// Default: the host of each broker address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate: encrypted but not
	// authenticated, for tests only. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// On reports whether TLS is enabled: enabled as written, else whether any
// other key is set. A nil *TLS is off.
func (t *TLS) On() bool {
	if t == nil {
		return false
	}
	if t.Enabled != nil {
		return *t.Enabled
	}
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Flow is one scatter-gather pipeline with its own topics and groups.
type Flow struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`

	Topics     Topics `yaml:"topics"`
	Partitions int    `yaml:"partitions"`

	// Timeout is how long after its manifest is appended a request may
	// collect answers. Required.
	Timeout Duration `yaml:"timeout"`

	Fanout      Fanout      `yaml:"fanout"`
	Targets     []*Target   `yaml:"targets"`
	Strategy    Strategy    `yaml:"strategy"`
	Consolidate Consolidate `yaml:"consolidate"`
	Limits      Limits      `yaml:"limits"`
	Gather      GatherOpts  `yaml:"gather"`
	Worker      WorkerOpts  `yaml:"worker"`
}

// Topics names a flow's topics. Every name defaults to <flow>.<role>.
type Topics struct {
	Requests   string `yaml:"requests"`
	Results    string `yaml:"results"`
	Aggregated string `yaml:"aggregated"`
	Late       string `yaml:"late"`
	DeadLetter string `yaml:"dead_letter"`
	// ResultsRetention is the retention.ms that `topics create` gives the
	// results topic and that `run` requires at least. It must cover the
	// longest deadline plus the longest outage to survive. Default: 7 days.
	ResultsRetention Duration `yaml:"results_retention"`
}

// Fanout modes.
const (
	FanoutTargets = "targets" // one task per target, each with the whole payload
	FanoutItems   = "items"   // one task per item of a JSON array and per target
)

// Fanout says how a request becomes tasks.
type Fanout struct {
	// Mode is targets (default) or items.
	Mode string `yaml:"mode"`
	// Items is the path of the JSON array in the payload whose items become
	// tasks (items mode), e.g. "chunks" or "query.legs".
	Items string `yaml:"items"`
	// MaxTasks bounds the tasks of one request; a request that would make
	// more is dead-lettered. Default: 64.
	MaxTasks int `yaml:"max_tasks"`
}

// Target is a provider that answers tasks.
type Target struct {
	Name string `yaml:"name"`
	// Topic is the task topic. Default: <flow>.tasks.<name>.
	Topic string `yaml:"topic"`
	// MaxInFlight bounds the tasks of this target a worker runs at once:
	// the ceiling of an adaptive limit, the limit of a fixed one.
	// Default: the flow's worker.max_in_flight_per_target.
	MaxInFlight int `yaml:"max_in_flight"`

	// Concurrency is how a worker bounds the tasks of this target in
	// flight: ConcurrencyAdaptive follows the provider's latency between
	// MinInFlight and MaxInFlight, ConcurrencyFixed keeps MaxInFlight.
	// Default: the flow's worker.concurrency.
	Concurrency string `yaml:"concurrency"`
	// MinInFlight is the floor of the adaptive limit. Default: the
	// flow's worker.min_in_flight_per_target, at most MaxInFlight.
	MinInFlight int `yaml:"min_in_flight"`

	// RateLimit bounds the calls to this target's provider. Default: none.
	RateLimit *RateLimit `yaml:"rate_limit"`
	// HTTP configures the built-in HTTP worker for this target. Without it
	// the target needs a Go handler.
	HTTP *HTTPTarget `yaml:"http"`
	// Hedge sends a backup call when a call is slower than most. Default:
	// none. Opt in only for providers that tolerate a task called twice at
	// once (they de-duplicate on Idempotency-Key, or their calls have no
	// effect).
	Hedge *Hedge `yaml:"hedge"`
}

// Hedge configures hedged calls: a call that has not answered after the
// Quantile of the target's recent latencies (at least MinDelay) gets one
// backup call, with the same task, to the next endpoint; the first OK
// answer is kept and the other call cancelled. Budget bounds the share of
// calls that may get a backup. Load fills the keys left out; a key written
// as 0 is refused, not defaulted.
type Hedge struct {
	// Quantile of the latencies after which a backup is sent, in (0, 1).
	// Default 0.95.
	Quantile float64 `yaml:"quantile"`
	// Budget is the share of calls that may get a backup, in (0, 1].
	// Default 0.05.
	Budget float64 `yaml:"budget"`
	// Window is how many recent successful calls the quantile is taken
	// over; no backup is sent before 20 have answered. Default 1000.
	Window int `yaml:"window"`
	// MinDelay is the least time a call runs before a backup is sent.
	// Default 1ms.
	MinDelay Duration `yaml:"min_delay"`
}

// RateLimit bounds the calls to a provider: PerSecond calls a second, in
// bursts of up to Burst, over the whole worker group of the target. Each
// worker instance takes the share of the limit that it owns of the task
// topic's partitions (which is how the tasks are spread), so the group
// stays within the limit without talking to each other; every try of a
// retry is a call. A task whose turn would come after half the time it has
// left before its deadline (too late to answer in time) is answered ERROR
// "rate limited" at once, without a call.
type RateLimit struct {
	// PerSecond is the calls a second; required, positive.
	PerSecond float64 `yaml:"per_second"`
	// Burst is how many calls may go at once after a quiet spell.
	// Default: PerSecond rounded up, at least 1.
	Burst int `yaml:"burst"`
}

// HTTPTarget configures the built-in HTTP caller.
type HTTPTarget struct {
	// URL is the provider's endpoint. Give it or Endpoints.
	URL string `yaml:"url"`
	// Endpoints are several URLs of the same provider, instead of URL: each
	// try of a retry goes to the next one, and a hedge's backup call to the
	// one after its primary's.
	Endpoints []string `yaml:"endpoints"`
	Method    string   `yaml:"method"` // default POST
	// Timeout of one call. Default: the flow timeout.
	Timeout Duration `yaml:"timeout"`
	// Retries after a failed call (transport error, 5xx, 429). Default 0.
	Retries int `yaml:"retries"`
	// Backoff before the first retry, doubled each time up to MaxBackoff.
	// Defaults: 50ms and 1s.
	Backoff    Duration `yaml:"backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
	// Headers sent with every call; values may use ${ENV_VAR}.
	Headers map[string]string `yaml:"headers"`
	// MaxResponseBytes bounds the answer read. Default 1MiB.
	MaxResponseBytes ByteSize `yaml:"max_response_bytes"`
	// InsecureSkipVerify disables TLS verification. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// FollowRedirects says which redirects the caller follows:
	// RedirectsNever (the default: a 3xx answer is a permanent error) or
	// RedirectsSameHost (307 and 308 to the same host over https only, so
	// the headers, the method and the body go nowhere else).
	FollowRedirects string `yaml:"follow_redirects"`
	// Breaker opens after Failures consecutive failures and rejects calls
	// for Cooldown. Failures 0 disables it. Defaults: 5 and 5s.
	Breaker Breaker `yaml:"circuit_breaker"`
}

// URLs returns the endpoints the caller calls: Endpoints, or URL alone.
func (h *HTTPTarget) URLs() []string {
	if len(h.Endpoints) > 0 {
		return h.Endpoints
	}
	return []string{h.URL}
}

// Values of HTTPTarget.FollowRedirects.
const (
	RedirectsNever    = "never"
	RedirectsSameHost = "same_host"
)

// Breaker configures a circuit breaker.
type Breaker struct {
	// Failures is the number of consecutive failures that opens it; 0
	// disables the breaker. Default 5 (set by Load when absent).
	Failures *int     `yaml:"failures"`
	Cooldown Duration `yaml:"cooldown"`
}

// Threshold returns Failures, or 0 (disabled) when it is unset.
func (b Breaker) Threshold() int {
	if b.Failures == nil {
		return 0
	}
	return *b.Failures
}

// Strategy types.
const (
	StrategyAll     = "all"
	StrategyFirst   = "first"
	StrategyQuorum  = "quorum"
	StrategyTimeout = "timeout"
)

// Strategy says when a request is complete.
type Strategy struct {
	// Type is all (default), first, quorum or timeout.
	Type string `yaml:"type"`
	// Quorum is the OK answers a quorum needs: a number or "majority".
	Quorum Quorum `yaml:"quorum"`
	// MaxFailures is how many failed tasks are tolerated before the request
	// completes as failed. Default: no limit (-1).
	MaxFailures *int `yaml:"max_failures"`
}

// Consolidation types.
const (
	ConsolidateCollect = "collect"
	ConsolidateMin     = "min"
	ConsolidateMax     = "max"
	ConsolidateVote    = "vote"
	ConsolidateMerge   = "merge"
	ConsolidateSum     = "sum"
)

// Consolidate says how the answers become one value.
type Consolidate struct {
	// Type is collect (default), min, max, vote, merge, sum, or the name of a
	// consolidator registered in Go.
	Type string `yaml:"type"`
	// Field is the JSON path of the value compared (min, max), counted
	// (vote) or added (sum).
	Field string `yaml:"field"`
	// Path is the JSON path of the list merged (merge).
	Path string `yaml:"path"`
	// Key is the field that de-duplicates merged items (merge; optional).
	Key string `yaml:"key"`
	// Sort is the numeric field merged items are sorted by (merge; optional).
	Sort string `yaml:"sort"`
	// Order is desc (default) or asc.
	Order string `yaml:"order"`
	// Top keeps the first Top merged items; 0 keeps all.
	Top int `yaml:"top"`
}

// Limits bound what a flow accepts.
type Limits struct {
	// MaxPayloadBytes bounds request and result payloads. Default 900KiB,
	// so that a task or result record stays under the producer's 1MB batch
	// limit.
	MaxPayloadBytes ByteSize `yaml:"max_payload_bytes"`
	// MaxOpenRequests bounds the open requests of one gather partition; a
	// manifest beyond it completes at once as failed. Default 1,000,000.
	MaxOpenRequests int `yaml:"max_open_requests"`
	// MaxAggregateBytes bounds an aggregate; a larger one is replaced by a
	// failed aggregate without its result. Default 900KiB, under the broker's
	// default message.max.bytes.
	MaxAggregateBytes ByteSize `yaml:"max_aggregate_bytes"`
	// MaxTimeout bounds the timeout_ms of a manifest: the gather
	// dead-letters a manifest that asks for more, so that no request stays
	// open longer than the results topic keeps its manifest. At least the
	// timeout, so that the timeout can be raised while older manifests are
	// open; with gather.closed_retention at most topics.results_retention.
	// Default: 1h, or the timeout when it is longer, but no more than
	// topics.results_retention less gather.closed_retention.
	MaxTimeout Duration `yaml:"max_timeout"`
}

// GatherOpts tunes the gather.
type GatherOpts struct {
	// TickInterval is the most often a tick is written to one quiet
	// partition; it bounds how late a deadline fires there. Default 200ms.
	TickInterval Duration `yaml:"tick_interval"`
	// ClosedRetention is how long, in log time, a completed request is
	// remembered so that a second manifest or a late result for it is
	// recognised. Default: twice the timeout, at least one minute.
	ClosedRetention Duration `yaml:"closed_retention"`
	// RebuildTimeout bounds how long a gather may take to rebuild (or
	// re-fold) a partition's state up to the committed offset; past it the
	// role fails, and is restarted, with what the rebuild was waiting for.
	// Default 10m.
	RebuildTimeout Duration `yaml:"rebuild_timeout"`
	// CommitDelay is how long a transaction of the gather stays open while
	// its polls write nothing but state and offsets (results and manifests
	// that decide no request): the next polls fold into it. A poll that
	// writes an aggregate, a late record or a dead letter ends it at once,
	// and so do an assignment, a revocation and a shutdown. Such results
	// then share one transaction instead of ending one each, and the
	// result that completes a request does not wait for the transaction
	// of the one before it to end. 0 ends a transaction after every poll.
	// Default 100ms; less than kafka.transaction_timeout.
	CommitDelay *Duration `yaml:"commit_delay"`
}

// WorkerOpts tunes the workers.
type WorkerOpts struct {
	// MaxInFlight bounds the tasks one worker process holds at once over
	// all targets of the flow, from the call until the broker acknowledged
	// the result. Default 4096.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxInFlightPerTarget is the default of Target.MaxInFlight. Default
	// 1024.
	MaxInFlightPerTarget int `yaml:"max_in_flight_per_target"`

	// Concurrency is the default of Target.Concurrency: ConcurrencyAdaptive
	// (the default) or ConcurrencyFixed.
	Concurrency string `yaml:"concurrency"`
	// MinInFlightPerTarget is the default of Target.MinInFlight. Default 8.
	MinInFlightPerTarget int `yaml:"min_in_flight_per_target"`

	// DeadlineGrace is added to a task's deadline (the scatter's clock plus
	// the timeout) to cover the time until the broker appends the manifest,
	// from which the gather counts. A provider that hangs is cut at the
	// task's deadline, so its ERROR result lands after the gather's deadline
	// and the target is reported missing, not failed. Default 1s.
	DeadlineGrace Duration `yaml:"deadline_grace"`
	// Cancel says what a worker does with the tasks of a request the
	// gather has decided (first, quorum, failed by max_failures, deadline):
	// CancelDecided (the default) follows the aggregated topic
	// read_committed and answers them ERROR "cancelled: request decided"
	// without calling the provider, cutting calls in flight short;
	// CancelNever calls every task. The gather's outcome is the same
	// either way: those results reach it after the aggregate, as late.
	Cancel string `yaml:"cancel"`
}

// Values of Target.Concurrency and WorkerOpts.Concurrency.
const (
	ConcurrencyAdaptive = "adaptive"
	ConcurrencyFixed    = "fixed"
)

// Values of WorkerOpts.Cancel.
const (
	CancelDecided = "decided"
	CancelNever   = "never"
)

// Flow returns the flow named name, or nil.
func (t *Topology) Flow(name string) *Flow {
	for _, f := range t.Flows {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Target returns the target named name, or nil.
func (f *Flow) Target(name string) *Target {
	for _, t := range f.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Group returns the consumer group of a role of the flow ("scatter",
// "gather", or "worker.<target>").
func (t *Topology) Group(f *Flow, role string) string {
	return fmt.Sprintf("%s.%s.%s", t.Kafka.GroupPrefix, f.Name, role)
}

// QuorumFor returns the OK answers a quorum needs out of n tasks.
func (s Strategy) QuorumFor(n int) int {
	if s.Quorum.Majority {
		return n/2 + 1
	}
	return s.Quorum.N
}

// MaxFailuresOrNone returns max_failures, or -1 when there is no limit.
func (s Strategy) MaxFailuresOrNone() int {
	if s.MaxFailures == nil {
		return -1
	}
	return *s.MaxFailures
}

// TimeoutDuration is Timeout as a time.Duration.
func (f *Flow) TimeoutDuration() time.Duration { return f.Timeout.D }

// AllTopics lists every topic of the flow: requests, task topics, results,
// aggregated, late and dead-letter.
func (f *Flow) AllTopics() []string {
	ts := []string{f.Topics.Requests}
	for _, t := range f.Targets {
		if t != nil { // an empty list entry, reported by validation
			ts = append(ts, t.Topic)
		}
	}
	return append(ts, f.Topics.Results, f.Topics.Aggregated, f.Topics.Late, f.Topics.DeadLetter)
}
