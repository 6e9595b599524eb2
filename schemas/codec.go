package schemas

import (
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

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
)

// DecodeError describes a record that could not be decoded.
type DecodeError struct {
	Kind        Kind    // the kind the fingerprint names, or KindUnknown
	Fingerprint [8]byte // the writer's fingerprint, zero when absent
	Err         error   // one of the sentinel errors, possibly wrapping the Avro error
}

func (e *DecodeError) Error() string {
	if e.Fingerprint == [8]byte{} {
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
// A Codec is safe for concurrent use once set up; AddWriterSchema must not
// run concurrently with decoding.
type Codec struct {
	current [numKinds]*avro.Schema
	byName  map[string]Kind
	mu      sync.RWMutex
	readers map[[8]byte]reader
}

// NewCodec returns a codec that knows the current version of every schema.
func NewCodec() *Codec {
	c := &Codec{byName: map[string]Kind{}, readers: map[[8]byte]reader{}}
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
	out, err := c.current[k].AppendSingleObject(dst, v)
	if err != nil {
		return dst, fmt.Errorf("schemas: encode %s: %w", k, err)
	}
	return out, nil
}

// Encode returns the single-object encoding of v; see Append.
func (c *Codec) Encode(v any) ([]byte, error) { return c.Append(nil, v) }

// Kind returns the kind of the encoded record b, judged by its fingerprint.
func (c *Codec) Kind(b []byte) (Kind, error) {
	_, k, err := c.lookup(b)
	return k, err
}

func (c *Codec) lookup(b []byte) (reader, Kind, error) {
	fp, _, err := avro.SingleObjectFingerprint(b)
	if err != nil {
		return reader{}, KindUnknown, &DecodeError{Err: fmt.Errorf("%w: %w", ErrNotSingleObject, err)}
	}
	c.mu.RLock()
	r, ok := c.readers[fp]
	c.mu.RUnlock()
	if !ok {
		return reader{}, KindUnknown, &DecodeError{Fingerprint: fp, Err: ErrUnknownFingerprint}
	}
	return r, r.kind, nil
}

// Decode decodes b into a new value of its kind: *Request, *Task,
// *Manifest, *Result, *Tick or *Aggregate. The returned value does not
// alias b.
func (c *Codec) Decode(b []byte) (any, error) {
	r, k, err := c.lookup(b)
	if err != nil {
		return nil, err
	}
	var v any
	switch k {
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
	if err := c.decodeBody(r, b, v); err != nil {
		return nil, err
	}
	return v, nil
}

// DecodeInto decodes b into v, a pointer to one of the contract's types,
// and fails with ErrWrongKind when b holds another kind.
func (c *Codec) DecodeInto(b []byte, v any) error {
	r, k, err := c.lookup(b)
	if err != nil {
		return err
	}
	if want := kindOf(v); want != k {
		return &DecodeError{Kind: k, Fingerprint: [8]byte(b[2:10]), Err: fmt.Errorf("%w: want %s, have %s", ErrWrongKind, want, k)}
	}
	return c.decodeBody(r, b, v)
}

func (c *Codec) decodeBody(r reader, b []byte, v any) error {
	rest, err := r.schema.Decode(b[10:], v)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d trailing bytes", len(rest))
	}
	if err != nil {
		return &DecodeError{Kind: r.kind, Fingerprint: [8]byte(b[2:10]), Err: fmt.Errorf("%w: %w", ErrMalformed, err)}
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
