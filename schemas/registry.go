package schemas

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/avro"
)

// The schema registry's framing (the Confluent wire format): the magic byte
// 0x00, the 4-byte big-endian id of the writer's schema in the registry,
// then the Avro binary body.
const (
	registryMagic     = 0x00
	registryHeaderLen = 5
)

// maxUnknownIDs bounds the ids remembered as unknown, so that a flood of
// records with made-up ids neither grows memory nor asks the registry again
// for each.
const maxUnknownIDs = 4096

func appendRegistryHeader(dst []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, registryMagic), id)
}

// SchemaSource fetches the text of a writer schema by its registry id.
// *Registry is one. An error that wraps ErrSchemaNotFound means the id is
// not in the registry; any other error is taken as the registry being
// unavailable.
type SchemaSource interface {
	SchemaByID(ctx context.Context, id uint32) (string, error)
}

// SchemaSourceFunc adapts a function to SchemaSource.
type SchemaSourceFunc func(ctx context.Context, id uint32) (string, error)

// SchemaByID calls f.
func (f SchemaSourceFunc) SchemaByID(ctx context.Context, id uint32) (string, error) {
	return f(ctx, id)
}

// registryState is the registry side of a Codec.
type registryState struct {
	mu      sync.RWMutex
	ids     [numKinds]uint32 // writer ids; 0: write single-object
	byID    map[uint32]reader
	unknown map[uint32]error // ids that are not, or not of, the contract
	src     SchemaSource
	fetchMu sync.Mutex // one fetch at a time: the same id is asked once
	timeout time.Duration
}

func newRegistryState() registryState {
	return registryState{byID: map[uint32]reader{}, unknown: map[uint32]error{}, timeout: 10 * time.Second}
}

func (r *registryState) on() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.src != nil || len(r.byID) > 0
}

func (r *registryState) writerID(k Kind) (uint32, bool) {
	r.mu.RLock()
	id := r.ids[k]
	r.mu.RUnlock()
	return id, id != 0
}

// SetSchemaID records that id is the schema registry's id of the current
// schema of kind k: from then on the codec writes records of kind k in the
// registry's framing with that id, and reads records that name it without
// asking the registry. Calling it again for the same kind changes the id it
// writes; the earlier id is still read.
func (c *Codec) SetSchemaID(k Kind, id uint32) error { return c.setSchemaID(k, id, true) }

// setSchemaID records id as the current schema of kind k, and as the id
// written when write is set.
func (c *Codec) setSchemaID(k Kind, id uint32, write bool) error {
	if k == KindUnknown || k >= numKinds {
		return fmt.Errorf("schemas: set schema id: no kind %s", k)
	}
	if id == 0 {
		return errors.New("schemas: set schema id: id 0")
	}
	c.reg.mu.Lock()
	defer c.reg.mu.Unlock()
	if r, ok := c.reg.byID[id]; ok && r.kind != k {
		return fmt.Errorf("schemas: set schema id: id %d is already the %s schema", id, r.kind)
	}
	if write {
		c.reg.ids[k] = id
	}
	c.reg.byID[id] = reader{kind: k, schema: c.current[k]}
	delete(c.reg.unknown, id)
	return nil
}

// SchemaID returns the registry id the codec writes records of kind k with,
// or 0 when it writes them as single-object encodings.
func (c *Codec) SchemaID(k Kind) uint32 {
	if k == KindUnknown || k >= numKinds {
		return 0
	}
	id, _ := c.reg.writerID(k)
	return id
}

// SchemaText returns the text of the current schema of kind k, as the .avsc
// file has it (with docs and defaults), which is what is registered.
func (c *Codec) SchemaText(k Kind) string {
	if k == KindUnknown || k >= numKinds {
		return ""
	}
	return c.text[k]
}

// SetSchemaSource makes the codec read records in the registry's framing,
// fetching the schema of an id it does not know from src (once per id; a
// fetch waits at most timeout, 10s when 0). Schemas of the contract's records
// are resolved against the current ones, like AddWriterSchema; an id whose
// schema is not one of them is refused with ErrUnknownSchemaID.
func (c *Codec) SetSchemaSource(src SchemaSource, timeout time.Duration) {
	c.reg.mu.Lock()
	defer c.reg.mu.Unlock()
	c.reg.src = src
	if timeout > 0 {
		c.reg.timeout = timeout
	}
}

// SubjectKind is one schema of the contract under one subject.
type SubjectKind struct {
	Subject string
	Kind    Kind
}

// UseRegistry makes the codec write and read the registry's framing: for
// each subject and kind it registers the current schema (register true, as
// `topics create` does) or looks up its id (register false, as the roles do,
// so that they need no right to change the registry), records the id with
// SetSchemaID, and fetches unknown ids from reg. A kind found under several
// subjects with different ids is written with the first.
func (c *Codec) UseRegistry(ctx context.Context, reg *Registry, subjects []SubjectKind, register bool) error {
	written := map[Kind]bool{}
	for _, sk := range subjects {
		text := c.SchemaText(sk.Kind)
		if text == "" {
			return fmt.Errorf("schemas: use registry: subject %q: no kind %s", sk.Subject, sk.Kind)
		}
		var id uint32
		var err error
		if register {
			id, err = reg.Register(ctx, sk.Subject, text)
		} else {
			id, err = reg.Lookup(ctx, sk.Subject, text)
		}
		if err != nil {
			return err
		}
		if err := c.setSchemaID(sk.Kind, id, !written[sk.Kind]); err != nil {
			return err
		}
		written[sk.Kind] = true
	}
	c.SetSchemaSource(reg, reg.timeout)
	return nil
}

func (c *Codec) lookupID(b []byte) (reader, header, error) {
	if len(b) < registryHeaderLen {
		return reader{}, header{}, &DecodeError{Err: fmt.Errorf("%w: %d bytes, too short for the schema registry framing", ErrMalformed, len(b))}
	}
	id := binary.BigEndian.Uint32(b[1:registryHeaderLen])
	h := header{id: id, body: registryHeaderLen}
	c.reg.mu.RLock()
	r, ok := c.reg.byID[id]
	bad := c.reg.unknown[id]
	src, timeout := c.reg.src, c.reg.timeout
	c.reg.mu.RUnlock()
	switch {
	case ok:
		h.kind = r.kind
		return r, h, nil
	case bad != nil:
		return reader{}, h, h.err(bad)
	case src == nil:
		return reader{}, h, h.err(ErrUnknownSchemaID)
	}
	r, err := c.fetch(src, timeout, id)
	if err != nil {
		return reader{}, h, h.err(err)
	}
	h.kind = r.kind
	return r, h, nil
}

// fetch asks src for the schema of id, resolves it against the current
// schema of its record and remembers the outcome, unless the registry was
// unavailable.
func (c *Codec) fetch(src SchemaSource, timeout time.Duration, id uint32) (reader, error) {
	c.reg.fetchMu.Lock()
	defer c.reg.fetchMu.Unlock()
	c.reg.mu.RLock()
	r, ok := c.reg.byID[id]
	bad := c.reg.unknown[id]
	c.reg.mu.RUnlock()
	if ok {
		return r, nil
	}
	if bad != nil {
		return reader{}, bad
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	text, err := src.SchemaByID(ctx, id)
	if err != nil {
		if errors.Is(err, ErrSchemaNotFound) {
			return reader{}, c.rememberUnknown(id, ErrUnknownSchemaID)
		}
		return reader{}, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	w, err := avro.Parse(text)
	if err != nil {
		return reader{}, c.rememberUnknown(id, fmt.Errorf("%w: parse: %w", ErrUnknownSchemaID, err))
	}
	k, ok := c.byName[fullName(w)]
	if !ok {
		return reader{}, c.rememberUnknown(id, fmt.Errorf("%w: %q is not a record of the contract", ErrUnknownSchemaID, fullName(w)))
	}
	res, err := avro.Resolve(w, c.current[k])
	if err != nil {
		return reader{}, c.rememberUnknown(id, fmt.Errorf("%w: %s writer schema does not resolve: %w", ErrUnknownSchemaID, k, err))
	}
	r = reader{kind: k, schema: res}
	c.reg.mu.Lock()
	c.reg.byID[id] = r
	c.reg.mu.Unlock()
	return r, nil
}

func (c *Codec) rememberUnknown(id uint32, err error) error {
	c.reg.mu.Lock()
	if len(c.reg.unknown) < maxUnknownIDs {
		c.reg.unknown[id] = err
	}
	c.reg.mu.Unlock()
	return err
}

// Subject naming strategies, as the Confluent serializers name them.
const (
	// SubjectTopic is TopicNameStrategy: <topic>-value. Every record of a
	// topic is a version of one subject, so a registry that checks
	// compatibility (Confluent's default, BACKWARD) refuses the second kind
	// of the results topic, which holds manifests, results and ticks; use
	// topic_record there, or compatibility NONE for that subject.
	SubjectTopic = "topic"
	// SubjectRecord is RecordNameStrategy: the record's full name.
	SubjectRecord = "record"
	// SubjectTopicRecord is TopicRecordNameStrategy: <topic>-<full name>.
	SubjectTopicRecord = "topic_record"
)

// Subject returns the subject under which the schema of kind k written to
// topic is registered, by strategy (SubjectTopic when empty).
func (c *Codec) Subject(strategy, topic string, k Kind) (string, error) {
	s := c.Schema(k)
	if s == nil {
		return "", fmt.Errorf("schemas: subject: no kind %s", k)
	}
	switch strategy {
	case SubjectTopic, "":
		return topic + "-value", nil
	case SubjectRecord:
		return fullName(s), nil
	case SubjectTopicRecord:
		return topic + "-" + fullName(s), nil
	}
	return "", fmt.Errorf("schemas: subject: unknown strategy %q (want %s, %s or %s)", strategy, SubjectTopic, SubjectRecord, SubjectTopicRecord)
}

// ErrSchemaNotFound: the registry has no such schema id, or no such schema
// under the subject (Confluent error codes 40401, 40402 and 40403).
var ErrSchemaNotFound = errors.New("schemas: not found in the schema registry")

// RegistryError is an error answer of the schema registry.
type RegistryError struct {
	Op      string // what was asked: "register", "lookup", "get schema"
	Status  int    // HTTP status
	Code    int    // the registry's error_code, 0 when absent
	Message string // the registry's message, shortened
}

func (e *RegistryError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != 0 {
		return fmt.Sprintf("schemas: schema registry %s: HTTP %d, error %d: %s", e.Op, e.Status, e.Code, msg)
	}
	return fmt.Sprintf("schemas: schema registry %s: HTTP %d: %s", e.Op, e.Status, msg)
}

// Is makes errors.Is(err, ErrSchemaNotFound) true for a 404 answer.
func (e *RegistryError) Is(target error) bool {
	return target == ErrSchemaNotFound && e.Status == http.StatusNotFound
}

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// URL is the base of the Confluent Schema Registry API, e.g.
	// http://registry:8081 or, for Apicurio Registry,
	// http://registry:8080/apis/ccompat/v6. It must not carry credentials.
	URL string
	// Username and Password, when Username is set, are sent as HTTP basic
	// authentication. They never appear in errors.
	Username string
	Password string
	// Timeout bounds each request. Default 10s.
	Timeout time.Duration
	// Transport carries the requests. Default: http.DefaultTransport.
	Transport http.RoundTripper
}

// Registry is a client of the Confluent Schema Registry API, the part that
// registering and reading schemas needs. It is safe for concurrent use.
type Registry struct {
	base     *url.URL
	user     string
	password string
	timeout  time.Duration
	client   *http.Client
}

// maxRegistryAnswer bounds what is read of one answer of the registry.
const maxRegistryAnswer = 4 << 20

// NewRegistry returns a client of the registry at cfg.URL.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("schemas: schema registry URL: want http(s)://host[:port][/path]")
	}
	if u.User != nil {
		return nil, errors.New("schemas: schema registry URL: give the credentials as username and password, not in the URL")
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	tr := cfg.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	return &Registry{
		base: u, user: cfg.Username, password: cfg.Password, timeout: cfg.Timeout,
		// No redirects: they could carry the credentials elsewhere.
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}, nil
}

// URL returns the registry's base URL.
func (r *Registry) URL() string { return r.base.String() }

type schemaBody struct {
	Schema string `json:"schema"`
}

type idAnswer struct {
	ID *int64 `json:"id"`
}

// Register registers schema (Avro) under subject and returns its id. A
// schema already registered there keeps its id.
func (r *Registry) Register(ctx context.Context, subject, schema string) (uint32, error) {
	var a idAnswer
	if err := r.do(ctx, "register", http.MethodPost, "/subjects/"+url.PathEscape(subject)+"/versions", schemaBody{schema}, &a); err != nil {
		return 0, err
	}
	return checkID("register", a.ID)
}

// Lookup returns the id of schema under subject, failing with an error that
// wraps ErrSchemaNotFound when it is not registered there.
func (r *Registry) Lookup(ctx context.Context, subject, schema string) (uint32, error) {
	var a idAnswer
	if err := r.do(ctx, "lookup", http.MethodPost, "/subjects/"+url.PathEscape(subject), schemaBody{schema}, &a); err != nil {
		return 0, err
	}
	return checkID("lookup", a.ID)
}

// SchemaByID returns the text of the schema with id.
func (r *Registry) SchemaByID(ctx context.Context, id uint32) (string, error) {
	var a struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := r.do(ctx, "get schema", http.MethodGet, "/schemas/ids/"+strconv.FormatUint(uint64(id), 10), nil, &a); err != nil {
		return "", err
	}
	if a.SchemaType != "" && a.SchemaType != "AVRO" {
		return "", fmt.Errorf("schemas: schema registry get schema: id %d is a %s schema, not Avro: %w", id, a.SchemaType, ErrSchemaNotFound)
	}
	if a.Schema == "" {
		return "", fmt.Errorf("schemas: schema registry get schema: answer without a schema")
	}
	return a.Schema, nil
}

func checkID(op string, id *int64) (uint32, error) {
	if id == nil || *id < 1 || *id > 1<<32-1 {
		return 0, fmt.Errorf("schemas: schema registry %s: answer without a valid id", op)
	}
	return uint32(*id), nil
}

func (r *Registry) do(ctx context.Context, op, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("schemas: schema registry %s: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	u := *r.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("schemas: schema registry %s: %w", op, err)
	}
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	}
	if r.user != "" {
		req.SetBasicAuth(r.user, r.password)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		// *url.Error names the URL, which carries no credentials.
		return fmt.Errorf("schemas: schema registry %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRegistryAnswer))
	if err != nil {
		return fmt.Errorf("schemas: schema registry %s: read answer: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &RegistryError{Op: op, Status: resp.StatusCode}
		var a struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &a) == nil {
			e.Code, e.Message = a.Code, shorten(a.Message, 300)
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("schemas: schema registry %s: answer is not the expected JSON: %w", op, err)
	}
	return nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
