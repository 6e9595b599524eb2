package payload_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/scattergather/scattergather/processor/payload"
)

func TestLookup(t *testing.T) {
	doc, err := payload.Parse([]byte(`{"offer":{"price":12.50,"legs":[{"from":"AMS"},{"from":"JFK"}]},"n":1e3}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string
		err  error
	}{
		{"offer.price", "12.50", nil},
		{"n", "1e3", nil},
		{"offer.legs.1.from", `"JFK"`, nil},
		{"offer.legs.2.from", "", payload.ErrMissing},
		{"offer.legs.x", "", payload.ErrMissing},
		{"offer.price.cents", "", payload.ErrMissing},
		{"nope", "", payload.ErrMissing},
	} {
		v, err := payload.Lookup(doc, tc.path)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.path, err, tc.err)
			continue
		}
		if err == nil {
			b, _ := payload.Marshal(v)
			if string(b) != tc.want {
				t.Errorf("%s = %s, want %s", tc.path, b, tc.want)
			}
		}
	}
	if _, _, err := payload.Number(doc, "offer.legs"); !errors.Is(err, payload.ErrType) {
		t.Errorf("Number of an array: %v, want ErrType", err)
	}
	if _, err := payload.Array(doc, "offer.price"); !errors.Is(err, payload.ErrType) {
		t.Errorf("Array of a number: %v, want ErrType", err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a":1} {"b":2}`, `{"a":1}x`, `<html>`} {
		if _, err := payload.Parse([]byte(in)); !errors.Is(err, payload.ErrNotJSON) {
			t.Errorf("Parse(%q): %v, want ErrNotJSON", in, err)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts is valid JSON that
// Marshal writes back to an equal value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"price": 1.5}`, `[1,2,{"a":null}]`, `"x"`, `1e400`, `{"a":{"b":[true,false]}}`, `{`} {
		f.Add([]byte(s), "a.b.0")
	}
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		v, err := payload.Parse(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("Parse accepted invalid JSON %q", data)
		}
		b, err := payload.Marshal(v)
		if err != nil {
			return // numbers Go cannot re-encode (1e400) are still readable
		}
		v2, err := payload.Parse(b)
		if err != nil {
			t.Fatalf("Marshal wrote unparseable %q: %v", b, err)
		}
		b2, _ := payload.Marshal(v2)
		if string(b) != string(b2) {
			t.Fatalf("not stable: %s then %s", b, b2)
		}
		_, _ = payload.Lookup(v, path)
	})
}

// BenchmarkParse reads a provider's answer as the gather does for every
// answer of a consolidation by field.
func BenchmarkParse(b *testing.B) {
	in := []byte(`{"provider":"b","price":12.5,"currency":"EUR","valid_until":"2026-12-01T00:00:00Z","seats":[{"row":12,"seat":"C"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := payload.Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
