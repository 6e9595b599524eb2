package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/scattergather/scattergather/processor/topology"
)

// FuzzReadBody: any body, under any content type, is either refused with
// a 4xx kind of problem, or a JSON payload within the flow's limit.
func FuzzReadBody(f *testing.F) {
	f.Add([]byte(`{"from":"AMS"}`), false)
	f.Add([]byte(`{"payload":{"a":1},"attributes":{"k":"v"}}`), true)
	f.Add([]byte(`{"payload":null}`), true)
	f.Add([]byte(`{"attributes":{"k":1}}`), true)
	f.Add([]byte(`[1,2`), false)
	g := &Gateway{}
	flow := &topology.Flow{Name: "f", Limits: topology.Limits{MaxPayloadBytes: 64}}
	f.Fuzz(func(t *testing.T, body []byte, envelope bool) {
		r := httptest.NewRequest(http.MethodPost, "/v1/flows/f/requests", bytes.NewReader(body))
		if envelope {
			r.Header.Set("Content-Type", EnvelopeContentType)
		}
		payload, attrs, status, kind, _ := g.readBody(httptest.NewRecorder(), r, flow)
		if status != 0 {
			if status < 400 || status > 499 || problemTitles[kind] == "" {
				t.Fatalf("status %d kind %q", status, kind)
			}
			return
		}
		if !json.Valid(payload) || len(payload) > 64 || attrs == nil {
			t.Fatalf("accepted payload %q (%d bytes), attributes %v", payload, len(payload), attrs)
		}
	})
}

func FuzzPreferWait(f *testing.F) {
	f.Add("wait=5")
	f.Add("respond-async, wait=10;x")
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set("Prefer", v)
		if d, ok := preferWait(h); ok && d < 0 {
			t.Fatalf("negative wait %s from %q", d, v)
		}
	})
}
