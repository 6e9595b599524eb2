package schemas_test

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/avro"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/schemas"
)

// countingSource counts the schemas fetched from the registry.
type countingSource struct {
	src   schemas.SchemaSource
	calls atomic.Int64
}

func (c *countingSource) SchemaByID(ctx context.Context, id uint32) (string, error) {
	c.calls.Add(1)
	return c.src.SchemaByID(ctx, id)
}

func registryFrame(id uint32, body []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0}, id), body...)
}

// The round trip against a real registry: register the contract's schemas,
// write with the ids, read back with a codec that knows no id yet, and read
// both framings, an older writer's schema and refused ids.
func TestIntegrationSchemaRegistry(t *testing.T) {
	url := processortest.Registry(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := schemas.NewRegistry(schemas.RegistryConfig{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	flow := processortest.Unique("reg")
	writer := schemas.NewCodec()
	var subjects []schemas.SubjectKind
	add := func(strategy, topic string, kinds ...schemas.Kind) {
		for _, k := range kinds {
			s, err := writer.Subject(strategy, topic, k)
			if err != nil {
				t.Fatal(err)
			}
			subjects = append(subjects, schemas.SubjectKind{Subject: s, Kind: k})
		}
	}
	add(schemas.SubjectTopic, flow+".requests", schemas.KindRequest)
	add(schemas.SubjectTopicRecord, flow+".results", schemas.KindManifest, schemas.KindResult, schemas.KindTick)
	add(schemas.SubjectTopic, flow+".aggregated", schemas.KindAggregate)
	add(schemas.SubjectTopic, flow+".tasks.a", schemas.KindTask)

	// A role only looks up: before registration the subject is unknown.
	if _, err := reg.Lookup(ctx, subjects[0].Subject, writer.SchemaText(schemas.KindRequest)); !errors.Is(err, schemas.ErrSchemaNotFound) {
		t.Fatalf("lookup before registering: want ErrSchemaNotFound, have %v", err)
	}
	if err := writer.UseRegistry(ctx, reg, subjects, true); err != nil {
		t.Fatalf("register: %v", err)
	}
	ids := map[uint32]schemas.Kind{}
	for _, sk := range subjects {
		id := writer.SchemaID(sk.Kind)
		if id == 0 {
			t.Fatalf("%s: no id after registering", sk.Kind)
		}
		if k, dup := ids[id]; dup && k != sk.Kind {
			t.Fatalf("id %d given to both %s and %s", id, k, sk.Kind)
		}
		ids[id] = sk.Kind
	}
	// Registering again keeps the ids; a role's look-up finds them.
	role := schemas.NewCodec()
	if err := role.UseRegistry(ctx, reg, subjects, false); err != nil {
		t.Fatalf("look up: %v", err)
	}
	again := schemas.NewCodec()
	if err := again.UseRegistry(ctx, reg, subjects, true); err != nil {
		t.Fatalf("register again: %v", err)
	}
	for _, sk := range subjects {
		if a, b, c := writer.SchemaID(sk.Kind), role.SchemaID(sk.Kind), again.SchemaID(sk.Kind); a != b || a != c {
			t.Fatalf("%s: registered id %d, looked-up id %d, re-registered id %d", sk.Kind, a, b, c)
		}
	}

	// A reader that knows no id fetches each writer schema once.
	src := &countingSource{src: reg}
	reader := schemas.NewCodec()
	reader.SetSchemaSource(src, 0)
	for _, in := range sampleRecords() {
		k := kindOfValue(t, in)
		b, err := writer.Encode(in)
		if err != nil {
			t.Fatalf("encode %T: %v", in, err)
		}
		if b[0] != 0 || binary.BigEndian.Uint32(b[1:5]) != writer.SchemaID(k) {
			t.Fatalf("%T: want magic 0 and id %d, have % x", in, writer.SchemaID(k), b[:5])
		}
		for i := 0; i < 2; i++ {
			out, err := reader.Decode(b)
			if err != nil {
				t.Fatalf("decode %T in the registry framing: %v", in, err)
			}
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("registry round trip of %T:\n in: %+v\nout: %+v", in, in, out)
			}
		}
		// The same codec reads the single-object framing too.
		so, err := schemas.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := reader.Decode(so)
		if err != nil || !reflect.DeepEqual(in, out) {
			t.Fatalf("single-object %T through the registry codec: %v\n in: %+v\nout: %+v", in, err, in, out)
		}
		if got, err := reader.Kind(b); err != nil || got != k {
			t.Fatalf("Kind of a registry-framed %T: %v, %v", in, got, err)
		}
	}
	if n, want := src.calls.Load(), int64(len(ids)); n != want {
		t.Errorf("fetched %d schemas, want one per id (%d)", n, want)
	}

	// An older writer of Request, without content_type and attributes, is
	// resolved against the current schema: the defaults fill the gaps.
	old := `{"type":"record","name":"Request","namespace":"io.scattergather","fields":[
		{"name":"request_id","type":"string"},{"name":"flow","type":"string"},{"name":"payload","type":"bytes"}]}`
	oldID, err := reg.Register(ctx, processortest.Unique("reg-old")+"-value", old)
	if err != nil {
		t.Fatalf("register the older schema: %v", err)
	}
	body, err := avro.MustParse(old).AppendEncode(nil, map[string]any{"request_id": "r-old", "flow": flow, "payload": []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	var req schemas.Request
	if err := reader.DecodeInto(registryFrame(oldID, body), &req); err != nil {
		t.Fatalf("decode the older writer's record: %v", err)
	}
	if req.RequestID != "r-old" || string(req.Payload) != "p" || req.ContentType != schemas.ContentTypeJSON || len(req.Attributes) != 0 {
		t.Fatalf("older writer's record read as %+v", req)
	}
	var task schemas.Task
	if err := reader.DecodeInto(registryFrame(oldID, body), &task); !errors.Is(err, schemas.ErrWrongKind) {
		t.Fatalf("a request read as a task: want ErrWrongKind, have %v", err)
	}

	// A schema that is no record of the contract, and an id the registry
	// does not have, are refused, and asked for once.
	otherID, err := reg.Register(ctx, processortest.Unique("reg-other")+"-value", `{"type":"record","name":"Other","namespace":"elsewhere","fields":[{"name":"x","type":"long"}]}`)
	if err != nil {
		t.Fatalf("register a foreign schema: %v", err)
	}
	missing := otherID + 1_000_000
	for _, id := range []uint32{otherID, missing} {
		before := src.calls.Load()
		for i := 0; i < 3; i++ {
			_, err := reader.Decode(registryFrame(id, []byte{2}))
			var de *schemas.DecodeError
			if !errors.Is(err, schemas.ErrUnknownSchemaID) || !errors.As(err, &de) || de.SchemaID != id {
				t.Fatalf("id %d: want ErrUnknownSchemaID naming the id, have %v", id, err)
			}
		}
		if n := src.calls.Load() - before; n != 1 {
			t.Errorf("id %d: asked the registry %d times, want once", id, n)
		}
	}

	// A truncated body of a known id is malformed, not a crash.
	b, err := writer.Encode(&schemas.Tick{SentMs: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Decode(b[:5]); !errors.Is(err, schemas.ErrMalformed) {
		t.Fatalf("truncated record: want ErrMalformed, have %v", err)
	}
}

func kindOfValue(t *testing.T, v any) schemas.Kind {
	t.Helper()
	b, err := schemas.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	k, err := schemas.Default.Kind(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
