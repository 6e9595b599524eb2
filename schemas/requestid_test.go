package schemas_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/schemas"
)

func TestValidRequestID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string // a part of the error; "" for a valid id
	}{
		{"req-1", ""},
		{"a", ""},
		{"order 42/übung", ""},
		{"日本語", ""},
		{"a b", ""},
		{strings.Repeat("x", schemas.MaxRequestIDBytes), ""},
		{"", "empty"},
		{strings.Repeat("x", schemas.MaxRequestIDBytes+1), "exceeds"},
		{strings.Repeat("é", schemas.MaxRequestIDBytes/2) + "x", "exceeds"},
		{"bad\xffutf8", "UTF-8"},
		{"cr\rlf", "U+000D"},
		{"line\n", "U+000A"},
		{"tab\tid", "U+0009"},
		{"nul\x00", "U+0000"},
		{"del\x7f", "U+007F"},
		{"c1\u0085x", "U+0085"},
		{"c1\u009fx", "U+009F"},
		{" lead", "white space"},
		{"trail ", "white space"},
		{"nbsp\u00a0", "white space"},
		{"\u2003em", "white space"},
	} {
		err := schemas.ValidRequestID(tc.id)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidRequestID(%q) = %v, want nil", tc.id, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidRequestID(%.40q) = %v, want an error containing %q", tc.id, err, tc.want)
		}
	}
	if err := schemas.ValidRequestID(""); !errors.Is(err, schemas.ErrEmptyRequestID) {
		t.Errorf("empty id: %v, want ErrEmptyRequestID", err)
	}
}
