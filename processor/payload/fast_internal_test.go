package payload

import (
	"reflect"
	"strings"
	"testing"
)

// fastCases are payloads the fast parser reads, refuses or must hand to
// encoding/json; for every one it must agree with encoding/json.
var fastCases = []string{
	`{"price": 1.5}`, `{"price":12.50,"offer":{"legs":[{"from":"AMS"},{"from":"JFK"}]},"n":1e3}`,
	`[1,2,{"a":null}]`, `"x"`, `1e400`, `-0`, `0`, `-0.5e-7`, `12E+3`, `true`, `false`, `null`,
	`{}`, `[]`, ` { } `, "\t[ 1 , 2 ]\r\n", `{"a":1,"a":2}`, `{"a":{"b":[true,false,null]}}`,
	`{"name":"Zoë","city":"東京"}`, `["\u00e9"]`, `{"q":"a\"b"}`, `"a\/b"`, `"\ud800"`,
	// Refused by both.
	``, ` `, `{`, `}`, `[`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1} {"b":2}`, `{"a":1}x`,
	`<html>`, `01`, `[01]`, `1.`, `.5`, `1e`, `1e+`, `-`, `+1`, `tru`, `nul`, `True`, `NaN`,
	`"unterminated`, "\"tab\there\"", "\"bad \xff utf8\"", "\xef\xbb\xbf{}", `[1 2]`, `{"a":1 "b":2}`,
	strings.Repeat("[", 100) + strings.Repeat("]", 100), strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
}

func TestParseFastAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range fastCases {
		agree(t, []byte(in))
	}
}

// agree checks that the fast parser gives encoding/json's value when it
// takes a payload, and takes none that encoding/json refuses.
func agree(t *testing.T, b []byte) {
	t.Helper()
	want, err := parseDecoder(b)
	got, ok := parseFast(b)
	if !ok {
		return // encoding/json decides
	}
	if err != nil {
		t.Fatalf("fast parser took %q, which encoding/json refuses: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast parser read %q as %#v; encoding/json as %#v", b, got, want)
	}
}

// The common payload takes the fast path.
func TestParseFastTakesPlainPayloads(t *testing.T) {
	for _, in := range []string{`{"price": 1.5}`, `{"name":"Zoë","tags":["a","b"],"n":-1e-3,"ok":true,"x":null}`} {
		if _, ok := parseFast([]byte(in)); !ok {
			t.Errorf("fast parser refused %q", in)
		}
	}
}

func FuzzParseFast(f *testing.F) {
	for _, s := range fastCases {
		f.Add([]byte(s))
	}
	f.Fuzz(agree)
}
