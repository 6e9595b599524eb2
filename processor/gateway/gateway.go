package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// Role is the gateway's name as a role of the run command and in /readyz.
const Role = "gateway"

// EnvelopeContentType is the content type of a request envelope: a JSON
// object {"payload": <any JSON>, "attributes": {"key": "value", ...}},
// for a caller that sets the request's attributes. Any other body is the
// payload itself, without attributes.
const EnvelopeContentType = "application/vnd.scattergather.request+json"

// Errors of the gateway.
var (
	errBadWait = errors.New("gateway: wait is neither whole seconds nor a duration")
)

// Gateway serves the flows of a topology over HTTP (see the package
// documentation). It is a kafka.Runner (Run serves it on its address) and
// an http.Handler (ServeHTTP serves the flow requests). Safe for
// concurrent use.
type Gateway struct {
	t       *topology.Topology
	flows   map[string]*topology.Flow
	byTopic map[string]*topology.Flow
	o       options
	codec   *schemas.Codec
	idx     *Index
	prod    *kgo.Client
	mux     *http.ServeMux
	waiting chan struct{} // a slot per waiting request

	ready     chan struct{}
	readyOnce sync.Once
	detail    atomic.Value // string: why not ready
	addr      atomic.Value // string: the bound address

	// down says why the brokers do not serve the aggregates' reader
	// (its last poll's fetch errors), or nil.
	down atomic.Pointer[string]
	// unsent says why the last request could not be produced, or nil:
	// until a request is produced again, or the broker answers.
	unsent atomic.Pointer[string]
	// unreachable says why the broker did not answer the last probe
	// (see watchBroker), or nil.
	unreachable atomic.Pointer[string]
}

// probeInterval is how often a ready gateway asks the broker whether it
// answers.
const probeInterval = 5 * time.Second

// New returns a gateway of flows (every flow of t when empty). Its
// producer is made now, without connecting; Run reads the aggregates.
// Close releases the producer of a gateway that is never Run.
func New(t *topology.Topology, flows []*topology.Flow, opts ...Option) (*Gateway, error) {
	o := options{addr: DefaultAddr, maxWait: DefaultMaxWait, waitMargin: DefaultWaitMargin,
		maxWaiting: DefaultMaxWaiting, indexSize: DefaultIndexSize, indexBytes: DefaultIndexBytes, indexTTL: DefaultIndexTTL,
		produceTimeout: DefaultProduceTimeout, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	o.log = o.log.With("role", Role)
	var errs []error
	if o.maxWait <= 0 || o.waitMargin < 0 || o.produceTimeout <= 0 || o.indexTTL <= 0 {
		errs = append(errs, errors.New("gateway: max wait, produce timeout and index ttl must be positive, the wait margin not negative"))
	}
	if o.maxWaiting < 1 || o.indexSize < 1 || o.indexBytes < 1 {
		errs = append(errs, errors.New("gateway: max waiting, index size and index bytes must be at least 1"))
	}
	if len(flows) == 0 {
		flows = t.Flows
	}
	if len(flows) == 0 {
		errs = append(errs, errors.New("gateway: no flow to serve"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g := &Gateway{t: t, o: o, flows: map[string]*topology.Flow{}, byTopic: map[string]*topology.Flow{},
		codec: kafka.CodecOf(o.kafkaOpts...), idx: NewIndex(o.indexSize, o.indexBytes, o.indexTTL),
		waiting: make(chan struct{}, o.maxWaiting), ready: make(chan struct{})}
	for _, f := range flows {
		g.flows[f.Name] = f
		g.byTopic[f.Topics.Aggregated] = f
	}
	g.detail.Store("not started")
	g.addr.Store("")
	prod, err := kgo.NewClient(append(kafka.ClientOptions(t, "gateway", g.kafkaOpts()...),
		// A record not acknowledged in time fails, rather than holding
		// the buffer through a long outage.
		kgo.RecordDeliveryTimeout(max(2*o.produceTimeout, time.Second)))...)
	if err != nil {
		return nil, fmt.Errorf("gateway: producer: %w", err)
	}
	g.prod = prod
	g.mux = http.NewServeMux()
	g.mux.HandleFunc("POST /v1/flows/{flow}/requests", g.post)
	g.mux.HandleFunc("GET /v1/flows/{flow}/requests/{id...}", g.get)
	return g, nil
}

func (g *Gateway) kafkaOpts() []kafka.Opt {
	return append([]kafka.Opt{kafka.WithLogger(g.o.log)}, g.o.kafkaOpts...)
}

// Close closes the producer. Run closes it too once its ctx ends.
func (g *Gateway) Close() { g.prod.Close() }

// Ready is closed once the gateway listens (when it has an address or a
// listener) and the broker answered for its topics.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Addr is the address Run listens on, once Ready ("" before, or without
// an address).
func (g *Gateway) Addr() string { return g.addr.Load().(string) }

// Index is the gateway's index of aggregates and sent requests.
func (g *Gateway) Index() *Index { return g.idx }

// Status is the gateway's readiness for /readyz: ready once it listens and
// the broker answered for its topics, unless (a broker outage) the broker
// stops answering, its reader gets fetch errors or its last request could
// not be produced; then the detail says why.
func (g *Gateway) Status() kafka.Status {
	names := make([]string, 0, len(g.flows))
	for n := range g.flows {
		names = append(names, n)
	}
	sort.Strings(names)
	st := kafka.Status{Role: Role, Flow: strings.Join(names, ",")}
	if d := g.troubled(); d != "" {
		st.Detail = d
		return st
	}
	select {
	case <-g.ready:
		st.Ready = true
	default:
		st.Detail = g.detail.Load().(string)
	}
	return st
}

// Run serves the gateway on its listener or address (if any) and reads the flows'
// aggregated topics into the index until ctx ends. A broker that does not
// answer does not stop it: POSTs are answered 503 meanwhile. It returns a
// kafka.PermanentError when it cannot listen.
func (g *Gateway) Run(ctx context.Context) error {
	parent := ctx
	defer func() {
		// The producer outlives a failed run, which Supervise restarts.
		if parent.Err() != nil {
			g.prod.Close()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var srvDone chan error
	ln := g.o.ln
	if ln == nil && g.o.addr != "" {
		var err error
		if ln, err = net.Listen("tcp", g.o.addr); err != nil {
			return &kafka.PermanentError{Err: fmt.Errorf("gateway: listen on %s: %w", g.o.addr, err)}
		}
	}
	if ln != nil {
		// Slow clients hold a connection for a bounded time: the body is
		// read within ReadTimeout, the answer written within the longest
		// wait plus the produce bound.
		srv := &http.Server{Handler: g, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30*time.Second + g.o.maxWait + g.o.produceTimeout, IdleTimeout: 2 * time.Minute,
			TLSConfig: g.o.tls, ErrorLog: slog.NewLogLogger(g.o.log.Handler(), slog.LevelWarn)}
		srvDone = make(chan error, 1)
		go func() {
			if g.o.tls != nil {
				srvDone <- srv.ServeTLS(ln, "", "")
			} else {
				srvDone <- srv.Serve(ln)
			}
		}()
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
		}()
		g.addr.Store(ln.Addr().String())
		g.o.log.Info("serving flow requests", "addr", ln.Addr().String(), "tls", g.o.tls != nil, "token", g.o.token != "")
	}
	topics := make([]string, 0, len(g.byTopic))
	for t := range g.byTopic {
		topics = append(topics, t)
	}
	cons, err := kgo.NewClient(append(kafka.ClientOptions(g.t, "gateway-read", g.kafkaOpts()...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(g.o.now().Add(-g.o.indexTTL).UnixMilli())),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return fmt.Errorf("gateway: reader: %w", err)
	}
	defer cons.Close()
	go g.watchBroker(ctx, cons)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		g.read(ctx, cons)
	}()
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		cancel()
		<-readDone
		if g.o.ln != nil { // served once: a restart has nothing to serve on
			return &kafka.PermanentError{Err: fmt.Errorf("gateway: serve: %w", err)}
		}
		return fmt.Errorf("gateway: serve: %w", err)
	}
	<-readDone
	return nil
}

// watchBroker marks the gateway ready once the broker lists the ends of
// its topics, asking each second until then. Afterwards it asks again
// every probeInterval (each second while not ready), until ctx ends: a
// broker that does not answer makes the gateway not ready, and one that
// answers ends that and what a failed production said.
func (g *Gateway) watchBroker(ctx context.Context, cl *kgo.Client) {
	var topics []string
	for _, f := range g.flows {
		topics = append(topics, f.Topics.Requests, f.Topics.Aggregated)
	}
	adm := kadm.NewClient(cl)
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ends, err := adm.ListEndOffsets(lctx, topics...)
		cancel()
		if err == nil {
			err = ends.Error()
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			g.readyOnce.Do(func() {
				close(g.ready)
				g.o.log.Info("ready")
			})
			g.unreachable.Store(nil)
			g.unsent.Store(nil)
		case g.isReady():
			why := "the broker does not answer: " + err.Error()
			g.unreachable.Store(&why)
		default:
			g.detail.Store("waiting for the broker: " + err.Error())
		}
		wait := time.Second
		if g.troubled() == "" && g.isReady() {
			wait = probeInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// read feeds the index from the aggregated topics until ctx ends.
func (g *Gateway) read(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		g.polled(fs)
		now := g.o.now()
		fs.EachRecord(func(rec *kgo.Record) {
			f := g.byTopic[rec.Topic]
			if f == nil {
				return
			}
			var a schemas.Aggregate
			if err := g.codec.DecodeInto(rec.Value, &a); err != nil {
				g.o.log.Warn("undecodable aggregate", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
				return
			}
			b, err := json.Marshal(&a)
			if err != nil {
				g.o.log.Warn("aggregate as JSON", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
				return
			}
			g.idx.Put(Key{f.Name, a.RequestID}, append(b, '\n'), now)
			each(g.o.hooks, func(h HookAggregateRead) { h.OnGatewayAggregateRead(f.Name, len(b)+1) })
		})
	}
}

// polled records what a poll of the aggregates says of the brokers: fetch
// errors (a broker gone) make the gateway not ready with them, until a
// poll without errors.
func (g *Gateway) polled(fs kgo.Fetches) {
	fs.EachError(func(topic string, p int32, err error) {
		g.o.log.Warn("read aggregates", "topic", topic, "partition", p, "err", err)
	})
	if why := kafka.FetchTrouble(fs); why != "" {
		g.down.Store(&why)
		return
	}
	g.down.Store(nil)
}

// produced records the outcome of producing a request: a failure makes
// the gateway not ready until a request is produced again or the broker
// answers (see watchBroker).
func (g *Gateway) produced(err error) {
	if err == nil {
		g.unsent.Store(nil)
		return
	}
	why := fmt.Sprintf("a request could not be written to Kafka: %v", err)
	if errors.Is(err, context.DeadlineExceeded) {
		why = fmt.Sprintf("Kafka did not acknowledge a request within %s", g.o.produceTimeout)
	}
	g.unsent.Store(&why)
}

// troubled returns why the gateway is not ready whatever else: a request
// it could not produce, a broker that did not answer the last probe, or
// its reader's fetch errors; or "".
func (g *Gateway) troubled() string {
	if p := g.unsent.Load(); p != nil {
		return *p
	}
	if p := g.unreachable.Load(); p != nil {
		return *p
	}
	if p := g.down.Load(); p != nil {
		return *p
	}
	return ""
}

func (g *Gateway) isReady() bool {
	select {
	case <-g.ready:
		return true
	default:
		return false
	}
}

// ServeHTTP serves the flow requests, after the bearer-token check.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.o.now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		flow := r.PathValue("flow")
		if g.flows[flow] == nil {
			flow = OtherFlow
		}
		took := g.o.now().Sub(start)
		each(g.o.hooks, func(h HookResponse) { h.OnGatewayResponse(flow, r.Method, rec.status, took) })
	}()
	if g.o.token != "" && !g.authorized(r) {
		rec.Header().Set("WWW-Authenticate", `Bearer realm="scattergather"`)
		writeProblem(rec, r, http.StatusUnauthorized, ProblemUnauthorized, "", "a bearer token is required")
		return
	}
	g.mux.ServeHTTP(rec, r)
}

func (g *Gateway) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(g.o.token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// recorder keeps the status code of a response.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// wait returns how long a request may wait: the query's wait, else the
// Prefer header's, else def; capped at the maximum. applied is the
// preference to echo in Preference-Applied, if any.
func (g *Gateway) wait(r *http.Request, def time.Duration) (d time.Duration, applied string, err error) {
	d = def
	if q := r.URL.Query().Get("wait"); q != "" {
		if d, err = queryWait(q); err != nil {
			return 0, "", err
		}
	} else if p, ok := preferWait(r.Header); ok {
		d = p
		applied = "wait=" + strconv.Itoa(int(min(p, g.o.maxWait)/time.Second))
	}
	return min(d, g.o.maxWait), applied, nil
}

func (g *Gateway) location(flow, id string) string {
	return "/v1/flows/" + url.PathEscape(flow) + "/requests/" + url.PathEscape(id)
}

func (g *Gateway) post(w http.ResponseWriter, r *http.Request) {
	f := g.flows[r.PathValue("flow")]
	if f == nil {
		writeProblem(w, r, http.StatusNotFound, ProblemUnknownFlow, "", fmt.Sprintf("no flow %q here", r.PathValue("flow")))
		return
	}
	id, err := requestID(r.Header.Get("Idempotency-Key"))
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, ProblemBadRequestID, "", "Idempotency-Key: "+err.Error())
		return
	}
	keyID := "" // the id a problem names: the caller's, not a random one
	if r.Header.Get("Idempotency-Key") != "" {
		keyID = id
	}
	waitFor, applied, err := g.wait(r, f.Timeout.D+g.o.waitMargin)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, ProblemBadWait, keyID, err.Error())
		return
	}
	payload, attrs, status, kind, detail := g.readBody(w, r, f)
	if status != 0 {
		writeProblem(w, r, status, kind, keyID, detail)
		return
	}
	k := Key{f.Name, id}
	if applied != "" {
		w.Header().Set("Preference-Applied", applied)
	}
	// An id already answered is answered again, and never sent twice.
	if b, ok := g.idx.Get(k, g.o.now()); ok {
		writeAggregate(w, g.location(f.Name, id), b)
		return
	}
	select {
	case g.waiting <- struct{}{}:
		defer func() { <-g.waiting }()
	default:
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, ProblemBusy, id, fmt.Sprintf("%d requests are waiting already", cap(g.waiting)))
		return
	}
	each(g.o.hooks, func(h HookWaiting) { h.OnGatewayWaiting(f.Name, +1) })
	defer each(g.o.hooks, func(h HookWaiting) { h.OnGatewayWaiting(f.Name, -1) })

	digest := digestOf(payload, attrs)
	s, fresh := g.idx.Accept(k, digest, g.o.now())
	if !fresh && s.Digest != digest {
		writeProblem(w, r, http.StatusUnprocessableEntity, ProblemKeyReused, id, "a request with this Idempotency-Key and another body was sent already")
		return
	}
	if fresh {
		g.produce(f, k, s, payload, attrs)
	}
	timer := time.NewTimer(g.o.produceTimeout)
	defer timer.Stop()
	select {
	case <-s.Done():
		if err := s.Err(); err != nil {
			g.o.log.Warn("request not sent", "flow", f.Name, "err", err)
			w.Header().Set("Retry-After", "5")
			writeProblem(w, r, http.StatusServiceUnavailable, ProblemUnavailable, id, "the request could not be written to Kafka")
			return
		}
	case <-timer.C:
		g.produced(context.DeadlineExceeded)
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusServiceUnavailable, ProblemUnavailable, id,
			fmt.Sprintf("Kafka did not acknowledge the request within %s", g.o.produceTimeout))
		return
	case <-r.Context().Done():
		return
	}
	g.await(w, r, k, waitFor, true)
}

// produce sends the request of s in the background and settles s with
// the outcome; the production is bounded by the produce timeout.
func (g *Gateway) produce(f *topology.Flow, k Key, s *Sent, payload []byte, attrs schemas.Attributes) {
	req := &schemas.Request{RequestID: k.ID, Flow: f.Name, Payload: payload,
		ContentType: schemas.ContentTypeJSON, Attributes: attrs}
	b, err := g.codec.Encode(req)
	if err != nil {
		g.idx.Settle(k, s, fmt.Errorf("gateway: encode request: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.o.produceTimeout)
	g.prod.Produce(ctx, &kgo.Record{Topic: f.Topics.Requests, Key: []byte(k.ID), Value: b}, func(_ *kgo.Record, err error) {
		cancel()
		g.produced(err)
		g.idx.Settle(k, s, err)
	})
}

// await answers the aggregate of k once the index has it, or 202 after
// waitFor; sent says this gateway sent k.
func (g *Gateway) await(w http.ResponseWriter, r *http.Request, k Key, waitFor time.Duration, sent bool) {
	loc := g.location(k.Flow, k.ID)
	b, added, release := g.idx.Await(k, g.o.now())
	defer release()
	if b == nil && waitFor > 0 {
		timer := time.NewTimer(waitFor)
		defer timer.Stop()
		select {
		case <-added:
			b, _ = g.idx.Get(k, g.o.now())
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
	}
	if b != nil {
		writeAggregate(w, loc, b)
		return
	}
	if !sent {
		if _, ok := g.idx.Sent(k, g.o.now()); !ok {
			writeProblem(w, r, http.StatusNotFound, ProblemUnknownRequest, k.ID, "no aggregate of this request here, and it was not sent here")
			return
		}
	}
	pending, _ := json.Marshal(struct {
		RequestID string `json:"request_id"`
		Flow      string `json:"flow"`
		Status    string `json:"status"`
		Location  string `json:"location"`
	}{k.ID, k.Flow, "pending", loc})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", loc)
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(append(pending, '\n'))
}

func (g *Gateway) get(w http.ResponseWriter, r *http.Request) {
	f := g.flows[r.PathValue("flow")]
	if f == nil {
		writeProblem(w, r, http.StatusNotFound, ProblemUnknownFlow, "", fmt.Sprintf("no flow %q here", r.PathValue("flow")))
		return
	}
	id := r.PathValue("id")
	if err := schemas.ValidRequestID(id); err != nil {
		writeProblem(w, r, http.StatusBadRequest, ProblemBadRequestID, "", err.Error())
		return
	}
	waitFor, applied, err := g.wait(r, 0)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, ProblemBadWait, id, err.Error())
		return
	}
	if applied != "" {
		w.Header().Set("Preference-Applied", applied)
	}
	if waitFor > 0 {
		select {
		case g.waiting <- struct{}{}:
			defer func() { <-g.waiting }()
		default:
			waitFor = 0 // answer at once rather than refuse
		}
	}
	g.await(w, r, Key{f.Name, id}, waitFor, false)
}

func writeAggregate(w http.ResponseWriter, loc string, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Location", loc)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// requestID returns the request id of an Idempotency-Key header (a
// structured-field string "..." or the bare id), or a new random one when
// there is none.
func requestID(key string) (string, error) {
	if key == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]), nil
	}
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		key = key[1 : len(key)-1]
	}
	return key, schemas.ValidRequestID(key)
}

// readBody reads the request's payload and attributes; status is not 0
// when the body cannot be one, with the kind of problem and its detail.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, f *topology.Flow) (payload []byte, attrs schemas.Attributes, status int, kind, detail string) {
	limit := int64(f.Limits.MaxPayloadBytes)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	envelope := mt == EnvelopeContentType
	bodyLimit := limit
	if envelope {
		bodyLimit += EnvelopeSlack
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bodyLimit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, nil, http.StatusRequestEntityTooLarge, ProblemTooLarge, fmt.Sprintf("the body exceeds the flow's limit of %d bytes", bodyLimit)
	case err != nil:
		return nil, nil, http.StatusBadRequest, ProblemNotJSON, "the body could not be read"
	}
	if !json.Valid(body) {
		return nil, nil, http.StatusBadRequest, ProblemNotJSON, "the body is not valid JSON"
	}
	if !envelope {
		return body, schemas.Attributes{}, 0, "", ""
	}
	var env struct {
		Payload    json.RawMessage   `json:"payload"`
		Attributes map[string]string `json:"attributes"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Payload) == 0 {
		return nil, nil, http.StatusBadRequest, ProblemNotJSON, "an envelope is an object with a payload and string attributes"
	}
	if int64(len(env.Payload)) > limit {
		return nil, nil, http.StatusRequestEntityTooLarge, ProblemTooLarge, fmt.Sprintf("the payload exceeds the flow's limit of %d bytes", limit)
	}
	return bytes.Clone(env.Payload), schemas.AttributesOf(env.Attributes), 0, "", ""
}

// digestOf identifies a request's content, to tell a retry from a reuse
// of its key.
func digestOf(payload []byte, attrs schemas.Attributes) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:", len(payload))
	h.Write(payload)
	for _, a := range attrs {
		fmt.Fprintf(h, "%d:%s%d:%s", len(a.Key), a.Key, len(a.Value), a.Value)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}
