package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// The commands with encoding: registry, against a real broker and a real
// schema registry: topics create registers the schemas, the roles write the
// registry's framing with the registered ids, and a request written as a
// single-object encoding by an older producer is read all the same.
func TestIntegrationRegistryEncoding(t *testing.T) {
	brokers := processortest.Brokers(t)
	regURL := processortest.Registry(t)
	flow := processortest.Unique("regflow")
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"price": 7}`)
	}))
	defer provider.Close()
	topo := writeFile(t, "topology.yaml", fmt.Sprintf(`
kafka:
  brokers: [%s]
  encoding: registry
  schema_registry: {url: %q, subject_strategy: topic_record}
flows:
  - name: %s
    timeout: 20s
    targets: [{name: one, http: {url: %s}}]
`, brokers[0], regURL, flow, provider.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A role does not register: before topics create it refuses to start.
	if r := runCmd(ctx, `{}`, "send", "--topology", topo, "--flow", flow); r.code != exitFail || !strings.Contains(r.stderr, "topics create") {
		t.Fatalf("send before the schemas are registered: %+v", r)
	}
	create := runCmd(ctx, "", "topics", "create", "--topology", topo)
	if create.code != exitOK || !strings.Contains(create.stdout, flow+".requests-io.scattergather.Request") {
		t.Fatalf("topics create: %+v", create)
	}
	tp, err := topology.LoadFile(topo)
	if err != nil {
		t.Fatal(err)
	}
	codec, _, err := codecFor(ctx, tp, tp.Flows, false)
	if err != nil {
		t.Fatalf("look up the registered schemas: %v", err)
	}
	for _, k := range []schemas.Kind{schemas.KindRequest, schemas.KindTask, schemas.KindAggregate} {
		if codec.SchemaID(k) == 0 || !strings.Contains(create.stdout, fmt.Sprintf("schema %s, id %d", k, codec.SchemaID(k))) {
			t.Fatalf("topics create did not print the id %d of %s:\n%s", codec.SchemaID(k), k, create.stdout)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan result, 1)
	go func() {
		runDone <- runCmd(runCtx, "", "run", "--topology", topo, "--role", "all", "--state-dir", t.TempDir(), "--log-level", "warn", "--http-addr", "")
	}()
	send := runCmd(ctx, `{"from":"AMS"}`+"\n", "send", "--topology", topo, "--flow", flow)
	if send.code != exitOK {
		t.Fatalf("send: %+v", send)
	}
	// An older producer writes single-object encodings to the same topic.
	old, err := admin.NewSender(tp)
	if err != nil {
		t.Fatal(err)
	}
	oldReq := &schemas.Request{RequestID: "single-object-1", Flow: flow, Payload: []byte(`{"from":"CDG"}`), ContentType: schemas.ContentTypeJSON}
	sent := make(chan error, 1)
	if err := old.Send(ctx, oldReq, func(err error) { sent <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("send a single-object request: %v", err)
	}
	old.Close()

	seen := map[string]bool{}
	for _, a := range tailAggregates(ctx, t, topo, flow, 2) {
		if a.Outcome != string(schemas.OutcomeComplete) {
			t.Errorf("aggregate %s", a.line)
		}
		seen[a.RequestID] = true
	}
	if want := []string{strings.TrimSpace(send.stdout), oldReq.RequestID}; !seen[want[0]] || !seen[want[1]] {
		t.Fatalf("aggregates for %v, want %v", seen, want)
	}
	stop()
	if r := <-runDone; r.code != exitOK {
		t.Errorf("run exited %d: %s", r.code, r.stderr)
	}

	// On the wire: the roles wrote the registry's framing with the ids.
	for _, c := range []struct {
		topic string
		kind  schemas.Kind
	}{{flow + ".tasks.one", schemas.KindTask}, {flow + ".aggregated", schemas.KindAggregate}} {
		r, err := admin.NewReader(tp, c.topic, true)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		processortest.Eventually(t, 30*time.Second, "two records in "+c.topic, func() bool {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			defer pcancel()
			recs, _ := r.Poll(pctx)
			for _, rec := range recs {
				if len(rec.Value) < 5 || rec.Value[0] != 0 || binary.BigEndian.Uint32(rec.Value[1:5]) != codec.SchemaID(c.kind) {
					t.Errorf("%s: record at offset %d starts % x, want 00 and id %d", c.topic, rec.Offset, rec.Value[:min(5, len(rec.Value))], codec.SchemaID(c.kind))
				}
				n++
			}
			return n >= 2
		})
		r.Close()
	}
}
