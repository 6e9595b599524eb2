package schemas

import (
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/twmb/avro"
)

//go:embed *.avsc
var files embed.FS

// Kind names one record type of the contract.
type Kind uint8

// The record kinds, one per .avsc file.
const (
	KindUnknown Kind = iota
	KindRequest
	KindTask
	KindManifest
	KindResult
	KindTick
	KindAggregate
	numKinds
)

var kindFiles = [numKinds]string{
	KindRequest:   "request.avsc",
	KindTask:      "task.avsc",
	KindManifest:  "manifest.avsc",
	KindResult:    "result.avsc",
	KindTick:      "tick.avsc",
	KindAggregate: "aggregate.avsc",
}

var kindNames = [numKinds]string{
	KindUnknown:   "unknown",
	KindRequest:   "request",
	KindTask:      "task",
	KindManifest:  "manifest",
	KindResult:    "result",
	KindTick:      "tick",
	KindAggregate: "aggregate",
}

// String returns the kind's lower-case name, as in the .avsc file name.
func (k Kind) String() string {
	if k >= numKinds {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// Errors returned by the codec. Decode errors wrap one of these in a
// *DecodeError.
var (
	// ErrNotSingleObject: the bytes do not start with the Avro single-object
	// marker (0xC3 0x01) and an 8-byte fingerprint.
	ErrNotSingleObject = errors.New("schemas: not an Avro single-object encoding")
	// ErrUnknownFingerprint: the writer's schema fingerprint is not one this
	// codec knows.
	ErrUnknownFingerprint = errors.New("schemas: unknown schema fingerprint")
	// ErrWrongKind: the record is valid but of another kind than asked for.
	ErrWrongKind = errors.New("schemas: record of another kind")
	// ErrMalformed: the body does not decode with the writer's schema.
	ErrMalformed = errors.New("schemas: malformed record body")
	// ErrUnknownSchemaID: a record in the schema registry's framing names a
	// schema id that the codec does not know and cannot fetch, or whose
	// schema is not a record of the contract.
	ErrUnknownSchemaID = errors.New("schemas: unknown schema registry id")
	// ErrRegistryUnavailable: the schema of a record's id could not be
	// fetched from the schema registry (unreachable, or an error other than
	// not found). Unlike the others it may pass: the record is not at fault.
	ErrRegistryUnavailable = errors.New("schemas: schema registry unavailable")
)

// DecodeError describes a record that could not be decoded.
type DecodeError struct {
	Kind        Kind    // the kind the fingerprint or schema id names, or KindUnknown
	Fingerprint [8]byte // the writer's fingerprint, zero when absent
	// SchemaID is the schema registry id of a record in the registry's
	// framing (see Registry), zero otherwise.
	SchemaID uint32
	Err      error // one of the sentinel errors, possibly wrapping the Avro error
}

func (e *DecodeError) Error() string {
	switch {
	case e.SchemaID != 0:
		return fmt.Sprintf("%s (kind %s, schema id %d)", e.Err, e.Kind, e.SchemaID)
	case e.Fingerprint == [8]byte{}:
		return e.Err.Error()
	}
	return fmt.Sprintf("%s (kind %s, fingerprint %s)", e.Err, e.Kind, hex.EncodeToString(e.Fingerprint[:]))
}

func (e *DecodeError) Unwrap() error { return e.Err }

type reader struct {
	kind   Kind
	schema *avro.Schema // the writer resolved against the current reader schema
}

// Codec encodes the contract's records as Avro single-object encodings and
// decodes them by their fingerprint. It always writes the current schemas;
// it reads the current schemas and any writer schema added with
// AddWriterSchema, resolving them against the current ones.
//
// With a schema registry (UseRegistry, registry.go) it writes the registry's
// framing instead and reads both framings.
//
// A Codec is safe for concurrent use once set up; AddWriterSchema,
// SetSchemaID and UseRegistry must not run concurrently with encoding or
// decoding.
type Codec struct {
	current [numKinds]*avro.Schema
	text    [numKinds]string // the .avsc files, as registered
	byName  map[string]Kind
	mu      sync.RWMutex
	readers map[[8]byte]reader
	// sizes are the lengths of the last encoding of each kind, so that
	// Encode allocates once rather than growing the buffer step by step.
	sizes [numKinds]atomic.Int32

	reg registryState
}

// NewCodec returns a codec that knows the current version of every schema.
func NewCodec() *Codec {
	c := &Codec{byName: map[string]Kind{}, readers: map[[8]byte]reader{}, reg: newRegistryState()}
	for k := KindRequest; k < numKinds; k++ {
		text, err := files.ReadFile(kindFiles[k])
		if err != nil {
			panic(fmt.Sprintf("schemas: embedded %s: %v", kindFiles[k], err)) // built in; cannot happen
		}
		s, err := avro.Parse(string(text))
		if err != nil {
			panic(fmt.Sprintf("schemas: embedded %s: %v", kindFiles[k], err))
		}
		c.current[k] = s
		c.text[k] = string(text)
		c.byName[fullName(s)] = k
		c.readers[fingerprint(s)] = reader{kind: k, schema: s}
	}
	return c
}

// Default is the codec the package-level functions use.
var Default = NewCodec()

// fingerprint is the CRC-64-AVRO fingerprint of s's canonical form, in the
// little-endian order of the single-object encoding.
func fingerprint(s *avro.Schema) [8]byte {
	h := avro.NewRabin()
	h.Write(s.Canonical())
	var fp [8]byte
	binary.LittleEndian.PutUint64(fp[:], h.Sum64())
	return fp
}

// AddWriterSchema makes the codec accept records written with another
// version of one of the contract's schemas (matched by full name), resolved
// against the current version with Avro's schema-resolution rules.
func (c *Codec) AddWriterSchema(avsc string) error {
	w, err := avro.Parse(avsc)
	if err != nil {
		return fmt.Errorf("schemas: parse writer schema: %w", err)
	}
	k, ok := c.byName[fullName(w)]
	if !ok {
		return fmt.Errorf("schemas: writer schema %q is not a record of the contract", fullName(w))
	}
	r, err := avro.Resolve(w, c.current[k])
	if err != nil {
		return fmt.Errorf("schemas: %s writer schema does not resolve: %w", k, err)
	}
	c.mu.Lock()
	c.readers[fingerprint(w)] = reader{kind: k, schema: r}
	c.mu.Unlock()
	return nil
}

// Schema returns the current schema of kind k, or nil.
func (c *Codec) Schema(k Kind) *avro.Schema {
	if k == KindUnknown || k >= numKinds {
		return nil
	}
	return c.current[k]
}

// Fingerprint returns the CRC-64-AVRO fingerprint of the current schema of
// kind k, as it appears in single-object encodings.
func (c *Codec) Fingerprint(k Kind) [8]byte {
	return fingerprint(c.Schema(k))
}

func kindOf(v any) Kind {
	switch v.(type) {
	case *Request:
		return KindRequest
	case *Task:
		return KindTask
	case *Manifest:
		return KindManifest
	case *Result:
		return KindResult
	case *Tick:
		return KindTick
	case *Aggregate:
		return KindAggregate
	}
	return KindUnknown
}

// Append appends the single-object encoding of v, which must be a pointer
// to one of the contract's types, to dst.
func (c *Codec) Append(dst []byte, v any) ([]byte, error) {
	k := kindOf(v)
	if k == KindUnknown {
		return dst, fmt.Errorf("schemas: cannot encode %T", v)
	}
	var out []byte
	var err error
	if id, ok := c.reg.writerID(k); ok {
		out, err = c.current[k].AppendEncode(appendRegistryHeader(dst, id), v)
	} else {
		out, err = c.current[k].AppendSingleObject(dst, v)
	}
	if err != nil {
		return dst, fmt.Errorf("schemas: encode %s: %w", k, err)
	}
	return out, nil
}

// Encode returns the single-object encoding of v; see Append.
func (c *Codec) Encode(v any) ([]byte, error) {
	k := kindOf(v)
	if k == KindUnknown {
		return c.Append(nil, v)
	}
	// Room for one like the last, and a little more.
	n := c.sizes[k].Load()
	out, err := c.Append(make([]byte, 0, n+n/4), v)
	if err == nil && len(out) < math.MaxInt32 {
		c.sizes[k].Store(int32(len(out)))
	}
	return out, err
}

// Kind returns the kind of the encoded record b, judged by its fingerprint
// or schema registry id.
func (c *Codec) Kind(b []byte) (Kind, error) {
	_, h, err := c.lookup(b)
	return h.kind, err
}

// header is what the framing of a record says: its kind and where its
// body starts.
type header struct {
	kind Kind
	fp   [8]byte // single-object framing
	id   uint32  // registry framing
	body int
}

func (h header) err(err error) *DecodeError {
	return &DecodeError{Kind: h.kind, Fingerprint: h.fp, SchemaID: h.id, Err: err}
}

// lookup reads the framing of b: 0xC3 0x01 and a fingerprint, or, once
// UseRegistry was called, 0x00 and a schema registry id.
func (c *Codec) lookup(b []byte) (reader, header, error) {
	if len(b) > 0 && b[0] == registryMagic && c.reg.on() {
		return c.lookupID(b)
	}
	fp, _, err := avro.SingleObjectFingerprint(b)
	if err != nil {
		return reader{}, header{}, &DecodeError{Err: fmt.Errorf("%w: %w", ErrNotSingleObject, err)}
	}
	c.mu.RLock()
	r, ok := c.readers[fp]
	c.mu.RUnlock()
	if !ok {
		return reader{}, header{}, &DecodeError{Fingerprint: fp, Err: ErrUnknownFingerprint}
	}
	return r, header{kind: r.kind, fp: fp, body: 10}, nil
}

// Decode decodes b into a new value of its kind: *Request, *Task,
// *Manifest, *Result, *Tick or *Aggregate. The returned value does not
// alias b.
func (c *Codec) Decode(b []byte) (any, error) {
	r, h, err := c.lookup(b)
	if err != nil {
		return nil, err
	}
	var v any
	switch h.kind {
	case KindRequest:
		v = new(Request)
	case KindTask:
		v = new(Task)
	case KindManifest:
		v = new(Manifest)
	case KindResult:
		v = new(Result)
	case KindTick:
		v = new(Tick)
	case KindAggregate:
		v = new(Aggregate)
	}
	if err := c.decodeBody(r, h, b, v); err != nil {
		return nil, err
	}
	return v, nil
}

// DecodeInto decodes b into v, a pointer to one of the contract's types,
// and fails with ErrWrongKind when b holds another kind.
func (c *Codec) DecodeInto(b []byte, v any) error {
	r, h, err := c.lookup(b)
	if err != nil {
		return err
	}
	if want := kindOf(v); want != h.kind {
		return h.err(fmt.Errorf("%w: want %s, have %s", ErrWrongKind, want, h.kind))
	}
	return c.decodeBody(r, h, b, v)
}

func (c *Codec) decodeBody(r reader, h header, b []byte, v any) error {
	rest, err := r.schema.Decode(b[h.body:], v)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d trailing bytes", len(rest))
	}
	if err != nil {
		return h.err(fmt.Errorf("%w: %w", ErrMalformed, err))
	}
	return nil
}

// Encode encodes v with the Default codec.
func Encode(v any) ([]byte, error) { return Default.Encode(v) }

// Decode decodes b with the Default codec.
func Decode(b []byte) (any, error) { return Default.Decode(b) }

// DecodeInto decodes b into v with the Default codec.
func DecodeInto(b []byte, v any) error { return Default.DecodeInto(b, v) }

func fullName(s *avro.Schema) string {
	n := s.Root()
	if n.Namespace == "" {
		return n.Name
	}
	return n.Namespace + "." + n.Name
}
