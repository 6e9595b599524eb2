package schemas_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/avro"

	"github.com/scattergather/scattergather/schemas"
)

func sampleRecords() []any {
	return []any{
		&schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"a":1}`), ContentType: schemas.ContentTypeJSON, Attributes: schemas.AttributesOf(map[string]string{"k": "v"})},
		&schemas.Task{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: -1, Payload: []byte(`{}`), ContentType: schemas.ContentTypeJSON, ResultsPartition: 3, DeadlineMs: 1700000000000, Attributes: schemas.AttributesOf(map[string]string{})},
		&schemas.Manifest{RequestID: "r1", Flow: "f", Tasks: []schemas.TaskRef{{TaskID: "r1/a", Target: "a", Item: -1}, {TaskID: "r1/b/0", Target: "b", Item: 0}}, Strategy: "quorum", Quorum: 2, MaxFailures: -1, TimeoutMs: 1500, RequestPartition: 1, RequestOffset: 42, Attributes: schemas.AttributesOf(map[string]string{})},
		&schemas.Result{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: -1, Status: schemas.StatusOK, Payload: []byte(`{"price":10}`), ContentType: schemas.ContentTypeJSON, Attempts: 2, DurationMs: 12, Worker: "w1"},
		&schemas.Result{RequestID: "r1", Flow: "f", TaskID: "r1/b", Target: "b", Item: -1, Status: schemas.StatusError, Payload: []byte{}, ContentType: "", Error: "boom", Attempts: 1},
		&schemas.Tick{SentMs: 123},
		&schemas.Aggregate{RequestID: "r1", Flow: "f", Outcome: schemas.OutcomeQuorum, Strategy: "quorum", Consolidation: "min", Result: []byte(`{"x":1}`), ContentType: schemas.ContentTypeJSON, Tasks: 2,
			Answered: []schemas.Answer{{TaskID: "r1/a", Target: "a", Item: -1, LatencyMs: 5, Attempts: 1}},
			Failed:   []schemas.Answer{{TaskID: "r1/b", Target: "b", Item: -1, Error: "boom", LatencyMs: 7, Attempts: 1}},
			Missing:  []schemas.TaskRef{{TaskID: "r1/c", Target: "c", Item: -1}},
			OpenedMs: 1, DeadlineMs: 2, CompletedMs: 3, Partition: 4, ManifestOffset: 5, Attributes: schemas.AttributesOf(map[string]string{"a": "b"})},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, in := range sampleRecords() {
		b, err := schemas.Encode(in)
		if err != nil {
			t.Fatalf("encode %T: %v", in, err)
		}
		if b[0] != 0xC3 || b[1] != 0x01 {
			t.Fatalf("%T: no single-object marker: % x", in, b[:2])
		}
		out, err := schemas.Decode(b)
		if err != nil {
			t.Fatalf("decode %T: %v", in, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Errorf("round trip of %T:\n in: %+v\nout: %+v", in, in, out)
		}
		again, err := schemas.Encode(out)
		if err != nil || !bytes.Equal(b, again) {
			t.Errorf("%T: re-encoding differs (err %v)", in, err)
		}
	}
}

func encodeAll(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, in := range sampleRecords() {
		b, err := schemas.Encode(in)
		if err != nil {
			t.Fatalf("encode %T: %v", in, err)
		}
		out = append(out, b)
	}
	return out
}

func TestDecodeErrors(t *testing.T) {
	result, err := schemas.Encode(&schemas.Result{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: -1, Status: schemas.StatusOK,
		Payload: []byte(`{"price":10}`), ContentType: schemas.ContentTypeJSON, Attempts: 2, DurationMs: 12, Worker: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	unknownFP := append([]byte(nil), result...)
	unknownFP[5] ^= 0xff
	trailing := append(append([]byte(nil), result...), 0)
	for _, tc := range []struct {
		name     string
		b        []byte
		want     error
		wantKind schemas.Kind
		msg      string // a substring of the message
	}{
		{"nil", nil, schemas.ErrNotSingleObject, schemas.KindUnknown, "schemas: not an Avro single-object encoding"},
		{"JSON", []byte(`{"request_id":"r1"}`), schemas.ErrNotSingleObject, schemas.KindUnknown, "not an Avro single-object encoding"},
		{"marker only", []byte{0xC3, 0x01}, schemas.ErrNotSingleObject, schemas.KindUnknown, ""},
		{"short fingerprint", result[:9], schemas.ErrNotSingleObject, schemas.KindUnknown, ""},
		{"wrong marker", append([]byte{0xC3, 0x02}, result[2:]...), schemas.ErrNotSingleObject, schemas.KindUnknown, ""},
		{"unknown fingerprint", unknownFP, schemas.ErrUnknownFingerprint, schemas.KindUnknown, "schemas: unknown schema fingerprint (kind unknown, fingerprint "},
		{"header only", result[:10], schemas.ErrMalformed, schemas.KindResult, "schemas: malformed record body"},
		{"truncated body", result[:len(result)-3], schemas.ErrMalformed, schemas.KindResult, "(kind result, fingerprint "},
		{"trailing bytes", trailing, schemas.ErrMalformed, schemas.KindResult, "1 trailing bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := schemas.Decode(tc.b)
			if v != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Decode: %v %v, want %v", v, err, tc.want)
			}
			var de *schemas.DecodeError
			if !errors.As(err, &de) || de.Kind != tc.wantKind {
				t.Errorf("error %#v, want a *DecodeError of kind %s", err, tc.wantKind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q, want it to contain %q", err, tc.msg)
			}
			var r schemas.Result
			if err := schemas.DecodeInto(tc.b, &r); !errors.Is(err, tc.want) {
				t.Errorf("DecodeInto: %v, want %v", err, tc.want)
			}
			if tc.want != schemas.ErrMalformed {
				if _, err := schemas.Default.Kind(tc.b); !errors.Is(err, tc.want) {
					t.Errorf("Kind: %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func TestDecodeIntoWrongKind(t *testing.T) {
	for _, b := range encodeAll(t) {
		k, err := schemas.Default.Kind(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, into := range []any{&schemas.Request{}, &schemas.Task{}, &schemas.Manifest{}, &schemas.Result{}, &schemas.Tick{}, &schemas.Aggregate{}} {
			err := schemas.DecodeInto(b, into)
			same := fmt.Sprintf("%T", into) == fmt.Sprintf("*schemas.%s", strings.ToUpper(k.String()[:1])+k.String()[1:])
			if same {
				if err != nil {
					t.Errorf("DecodeInto %s into %T: %v", k, into, err)
				}
				continue
			}
			var de *schemas.DecodeError
			if !errors.Is(err, schemas.ErrWrongKind) || !errors.As(err, &de) || de.Kind != k || de.Fingerprint != schemas.Default.Fingerprint(k) {
				t.Errorf("DecodeInto %s into %T: %v", k, into, err)
			}
			if !strings.Contains(err.Error(), "have "+k.String()) {
				t.Errorf("message %q", err)
			}
		}
	}
	// Into something that is not a contract type.
	b := encodeAll(t)[0]
	var s string
	if err := schemas.DecodeInto(b, &s); !errors.Is(err, schemas.ErrWrongKind) || !strings.Contains(err.Error(), "want unknown, have request") {
		t.Errorf("DecodeInto a string: %v", err)
	}
}

func TestKinds(t *testing.T) {
	want := []string{"request", "task", "manifest", "result", "result", "tick", "aggregate"}
	fps := map[[8]byte]schemas.Kind{}
	for i, b := range encodeAll(t) {
		k, err := schemas.Default.Kind(b)
		if err != nil || k.String() != want[i] {
			t.Errorf("record %d: kind %s %v, want %s", i, k, err, want[i])
		}
		fp := schemas.Default.Fingerprint(k)
		if !bytes.Equal(b[2:10], fp[:]) {
			t.Errorf("%s: fingerprint % x in the record, % x from the codec", k, b[2:10], fp)
		}
		if other, dup := fps[fp]; dup && other != k {
			t.Errorf("%s and %s share a fingerprint", k, other)
		}
		fps[fp] = k
		if schemas.Default.Schema(k) == nil {
			t.Errorf("no schema for %s", k)
		}
	}
	if schemas.Default.Schema(schemas.KindUnknown) != nil || schemas.Default.Schema(schemas.Kind(200)) != nil {
		t.Error("a schema for an unknown kind")
	}
	if got := schemas.Kind(200).String(); got != "kind(200)" {
		t.Errorf("Kind(200) = %s", got)
	}
	if _, err := schemas.Encode(struct{}{}); err == nil || err.Error() != "schemas: cannot encode struct {}" {
		t.Errorf("Encode of a struct: %v", err)
	}
	if _, err := schemas.Encode(schemas.Tick{}); err == nil {
		t.Error("Encode of a value, not a pointer, succeeded")
	}
	// Append appends.
	b, err := schemas.Default.Append([]byte("prefix"), &schemas.Tick{SentMs: 1})
	if err != nil || !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatalf("Append: %q %v", b, err)
	}
	if v, err := schemas.Decode(b[len("prefix"):]); err != nil || v.(*schemas.Tick).SentMs != 1 {
		t.Errorf("decode of appended: %v %v", v, err)
	}
}

// resultV1 is result.avsc before duration_ms and worker were added;
// resultV0 also lacks attempts.
const resultV1 = `{
  "type": "record", "name": "Result", "namespace": "io.scattergather",
  "fields": [
    {"name": "request_id", "type": "string"},
    {"name": "flow", "type": "string"},
    {"name": "task_id", "type": "string"},
    {"name": "target", "type": "string"},
    {"name": "item", "type": "int", "default": -1},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["OK", "ERROR"], "default": "ERROR"}},
    {"name": "payload", "type": "bytes", "default": ""},
    {"name": "content_type", "type": "string", "default": "application/json"},
    {"name": "error", "type": "string", "default": ""},
    {"name": "attempts", "type": "int", "default": 1}
  ]
}`

var resultV0 = strings.Replace(resultV1, `,
    {"name": "attempts", "type": "int", "default": 1}`, "", 1)

type oldResult struct {
	RequestID   string `avro:"request_id"`
	Flow        string `avro:"flow"`
	TaskID      string `avro:"task_id"`
	Target      string `avro:"target"`
	Item        int32  `avro:"item"`
	Status      string `avro:"status"`
	Payload     []byte `avro:"payload"`
	ContentType string `avro:"content_type"`
	Error       string `avro:"error"`
	Attempts    int32  `avro:"attempts"`
}

func encodeOld(t testing.TB, avsc string, v any) []byte {
	t.Helper()
	s, err := avro.Parse(avsc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AppendSingleObject(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOlderWriterSchema(t *testing.T) {
	old := oldResult{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: 3, Status: "OK", Payload: []byte(`{"p":1}`),
		ContentType: "application/json", Attempts: 4}
	v1 := encodeOld(t, resultV1, &old)
	v0 := encodeOld(t, resultV0, &old)

	c := schemas.NewCodec()
	for _, b := range [][]byte{v1, v0} {
		if _, err := c.Decode(b); !errors.Is(err, schemas.ErrUnknownFingerprint) {
			t.Fatalf("an old record without its writer schema: %v", err)
		}
	}
	if err := c.AddWriterSchema(resultV1); err != nil {
		t.Fatal(err)
	}
	if err := c.AddWriterSchema(resultV0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		b        []byte
		attempts int32
	}{{"v1", v1, 4}, {"v0", v0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			want := &schemas.Result{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: 3, Status: schemas.StatusOK,
				Payload: []byte(`{"p":1}`), ContentType: "application/json", Attempts: tc.attempts, DurationMs: 0, Worker: ""}
			v, err := c.Decode(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("decoded\n %+v\nwant\n %+v", v, want)
			}
			// Missing fields take their defaults, not what the target held.
			r := schemas.Result{DurationMs: 99, Worker: "stale", Attempts: 77}
			if err := c.DecodeInto(tc.b, &r); err != nil {
				t.Fatal(err)
			}
			if r.DurationMs != 0 || r.Worker != "" || r.Attempts != tc.attempts {
				t.Errorf("DecodeInto a used value: duration %d worker %q attempts %d", r.DurationMs, r.Worker, r.Attempts)
			}
			if k, err := c.Kind(tc.b); k != schemas.KindResult || err != nil {
				t.Errorf("kind %s %v", k, err)
			}
		})
	}
	// The current schema is still what the codec writes.
	b, err := c.Encode(&schemas.Result{RequestID: "r", Status: schemas.StatusOK})
	if err != nil || !bytes.Equal(b[2:10], func() []byte { fp := c.Fingerprint(schemas.KindResult); return fp[:] }()) {
		t.Errorf("encode after AddWriterSchema: % x %v", b, err)
	}
	// The default codec is not affected.
	if _, err := schemas.Decode(v1); !errors.Is(err, schemas.ErrUnknownFingerprint) {
		t.Errorf("default codec: %v", err)
	}
}

func TestAddWriterSchemaErrors(t *testing.T) {
	c := schemas.NewCodec()
	for _, tc := range []struct {
		name, avsc, want string
	}{
		{"not a schema", `{"type": "record"`, "schemas: parse writer schema: "},
		{"not of the contract", `{"type": "record", "name": "Other", "namespace": "io.scattergather", "fields": []}`, `schemas: writer schema "io.scattergather.Other" is not a record of the contract`},
		{"another namespace", strings.Replace(resultV1, "io.scattergather", "com.example", 1), `schemas: writer schema "com.example.Result" is not a record of the contract`},
		{"does not resolve", strings.Replace(resultV1, `{"name": "request_id", "type": "string"}`, `{"name": "request_id", "type": "boolean"}`, 1), "schemas: result writer schema does not resolve: "},
	} {
		if err := c.AddWriterSchema(tc.avsc); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
}

func ExampleCodec() {
	c := schemas.NewCodec()
	b, err := c.Encode(&schemas.Tick{SentMs: 1700000000000})
	if err != nil {
		panic(err)
	}
	k, _ := c.Kind(b)
	fmt.Printf("% x | %s\n", b[:2], k)

	v, _ := c.Decode(b)
	fmt.Printf("%T %d\n", v, v.(*schemas.Tick).SentMs)

	var r schemas.Result
	err = c.DecodeInto(b, &r)
	fmt.Println(errors.Is(err, schemas.ErrWrongKind), err != nil)

	_, err = c.Decode([]byte(`{"plain":"JSON"}`))
	fmt.Println(errors.Is(err, schemas.ErrNotSingleObject))
	// Output:
	// c3 01 | tick
	// *schemas.Tick 1700000000000
	// true true
	// true
}

func FuzzDecode(f *testing.F) {
	for _, b := range encodeAll(f) {
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:10])
	}
	old := oldResult{RequestID: "r", Flow: "f", TaskID: "t", Target: "a", Item: -1, Status: "ERROR", Error: "x", Attempts: 1}
	f.Add(encodeOld(f, resultV1, &old))
	f.Add(encodeOld(f, resultV0, &old))
	f.Add([]byte{})
	f.Add([]byte{0xC3, 0x01})

	c := schemas.NewCodec()
	if err := c.AddWriterSchema(resultV1); err != nil {
		f.Fatal(err)
	}
	if err := c.AddWriterSchema(resultV0); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		k, kerr := c.Kind(b)
		if err != nil {
			var de *schemas.DecodeError
			if v != nil || !errors.As(err, &de) {
				t.Fatalf("Decode: %v %T %v", v, err, err)
			}
			if !errors.Is(err, schemas.ErrNotSingleObject) && !errors.Is(err, schemas.ErrUnknownFingerprint) && !errors.Is(err, schemas.ErrMalformed) {
				t.Fatalf("Decode error of no known class: %v", err)
			}
			if errors.Is(err, schemas.ErrMalformed) != (kerr == nil) {
				t.Fatalf("Kind %s %v disagrees with Decode %v", k, kerr, err)
			}
			return
		}
		if kerr != nil || k == schemas.KindUnknown {
			t.Fatalf("Kind of a decodable record: %s %v", k, kerr)
		}
		again, err := c.Encode(v)
		if err != nil {
			t.Fatalf("re-encode %T %+v: %v", v, v, err)
		}
		v2, err := c.Decode(again)
		if err != nil {
			t.Fatalf("decode of the re-encoding: %v", err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("re-encoding changed the value:\n %+v\n %+v", v, v2)
		}
		// The re-encoding is canonical: encoding it again gives the same bytes.
		third, err := c.Encode(v2)
		if err != nil || !bytes.Equal(third, again) {
			t.Fatalf("encoding is not stable (%v)", err)
		}
	})
}

// Attributes travel as a sorted array, not an Avro map: encoding the same
// aggregate gives the same bytes every time, whatever the map order.
func TestAttributesEncodeDeterministically(t *testing.T) {
	m := map[string]string{}
	for i := range 20 {
		m[fmt.Sprintf("k%02d", i)] = fmt.Sprint(i)
	}
	var first []byte
	for i := range 20 {
		a := &schemas.Aggregate{RequestID: "r", Flow: "f", Outcome: schemas.OutcomeComplete, Result: []byte("null"), Attributes: schemas.AttributesOf(m)}
		b, err := schemas.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
		} else if !bytes.Equal(first, b) {
			t.Fatalf("encoding %d differs from the first", i)
		}
	}
	got := schemas.Attributes{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}}.Normalize()
	if want := (schemas.Attributes{{Key: "a", Value: "2"}, {Key: "b", Value: "3"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Normalize = %v, want %v", got, want)
	}
}
