package gather

import "testing"

func TestCommitMetaRoundTrip(t *testing.T) {
	for _, m := range []CommitMeta{{Version: 1, Epoch: "", Oldest: 0, StreamTime: 0}, {Version: 1, Epoch: "r1764", Oldest: 42, StreamTime: 1700000000000}} {
		got, ok := ParseCommitMeta(m.String())
		if !ok || got != m {
			t.Errorf("%q parsed as %+v (%v), want %+v", m.String(), got, ok, m)
		}
	}
	for _, s := range []string{"", "member-1", "sg1;e=x;o=1", "sgx;e=;o=1;t=2", "sg1;e=;o=one;t=2", "sg1;e=;o=1;z=2"} {
		if _, ok := ParseCommitMeta(s); ok {
			t.Errorf("%q accepted", s)
		}
	}
}

// FuzzParseCommitMeta: offset metadata comes from the broker, written by
// any tool: parsing never panics, and what parses re-encodes the same way.
func FuzzParseCommitMeta(f *testing.F) {
	f.Add("sg1;e=r1;o=10;t=1700000000000")
	f.Add("member-abc")
	f.Fuzz(func(t *testing.T, s string) {
		m, ok := ParseCommitMeta(s)
		if !ok {
			return
		}
		again, ok := ParseCommitMeta(m.String())
		if !ok || again != m {
			t.Fatalf("%q -> %+v -> %q -> %+v", s, m, m.String(), again)
		}
	})
}
