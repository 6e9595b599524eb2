package scatter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/scatter"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

func flow(t *testing.T, body string) *topology.Flow {
	t.Helper()
	doc := "flows:\n  - name: f\n    timeout: 1s\n" + body
	topo, err := topology.Parse("t.yaml", []byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	return topo.Flows[0]
}

func planner(t *testing.T, f *topology.Flow, partitions int32) *scatter.Planner {
	t.Helper()
	p, err := scatter.NewPlanner(f, partitions, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStaticFanout(t *testing.T) {
	f := flow(t, `    worker: {deadline_grace: 250ms}
    targets: [{name: a}, {name: b, topic: custom.b}]
`)
	req := &schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"x": 1}`)}
	plan, err := planner(t, f, 12).Plan(req, 2, 42, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	rp := scatter.Partition("r1", 12)
	want := &schemas.Manifest{
		RequestID: "r1", Flow: "f", Strategy: "all", Quorum: 0, MaxFailures: -1, TimeoutMs: 1000,
		RequestPartition: 2, RequestOffset: 42, Attributes: schemas.AttributesOf(map[string]string{}),
		Tasks: []schemas.TaskRef{{TaskID: "r1/a", Target: "a", Item: -1}, {TaskID: "r1/b", Target: "b", Item: -1}},
	}
	if plan.ResultsPartition != rp || !reflect.DeepEqual(plan.Manifest, want) {
		t.Errorf("plan partition %d manifest\n %+v\nwant partition %d\n %+v", plan.ResultsPartition, plan.Manifest, rp, want)
	}
	if len(plan.Tasks) != 2 {
		t.Fatalf("%d tasks", len(plan.Tasks))
	}
	for i, wt := range []struct{ topic, id, target string }{{"f.tasks.a", "r1/a", "a"}, {"custom.b", "r1/b", "b"}} {
		got := plan.Tasks[i]
		task := &schemas.Task{RequestID: "r1", Flow: "f", TaskID: wt.id, Target: wt.target, Item: -1, Payload: []byte(`{"x": 1}`),
			ContentType: schemas.ContentTypeJSON, ResultsPartition: rp, DeadlineMs: 1_000_000 + 1000 + 250, Attributes: schemas.AttributesOf(map[string]string{})}
		if got.Topic != wt.topic || !reflect.DeepEqual(got.Task, task) {
			t.Errorf("task %d: %s %+v\nwant %s %+v", i, got.Topic, got.Task, wt.topic, task)
		}
	}

	// Attributes and content type pass through.
	req = &schemas.Request{RequestID: "r2", Flow: "f", Payload: []byte("plain"), ContentType: "text/plain", Attributes: schemas.AttributesOf(map[string]string{"tenant": "t1"})}
	plan, err = planner(t, f, 1).Plan(req, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if plan.ResultsPartition != 0 || plan.Manifest.Attributes.Map()["tenant"] != "t1" || plan.Tasks[1].Task.ContentType != "text/plain" ||
		plan.Tasks[1].Task.Attributes.Map()["tenant"] != "t1" || string(plan.Tasks[0].Task.Payload) != "plain" || plan.Tasks[0].Task.DeadlineMs != 1250 {
		t.Errorf("plan %+v task %+v", plan.Manifest, plan.Tasks[1].Task)
	}
}

func TestItemsFanout(t *testing.T) {
	f := flow(t, `    fanout: {mode: items, items: query.legs, max_tasks: 6}
    targets: [{name: a}, {name: b}]
`)
	req := &schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"query": {"legs": [{"to": "B", "from": "A", "n": 1.50}, "x", [1, 2e3]]}}`)}
	plan, err := planner(t, f, 3).Plan(req, 0, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, tk := range plan.Tasks {
		task := tk.Task
		got = append(got, fmt.Sprintf("%s %s %s %d %s", tk.Topic, task.TaskID, task.Target, task.Item, task.Payload))
		ref := plan.Manifest.Tasks[i]
		if ref.TaskID != task.TaskID || ref.Target != task.Target || ref.Item != task.Item {
			t.Errorf("manifest task %d %+v does not match the task %+v", i, ref, task)
		}
	}
	want := []string{
		`f.tasks.a r1/a/0 a 0 {"from":"A","n":1.50,"to":"B"}`,
		`f.tasks.b r1/b/0 b 0 {"from":"A","n":1.50,"to":"B"}`,
		`f.tasks.a r1/a/1 a 1 "x"`,
		`f.tasks.b r1/b/1 b 1 "x"`,
		`f.tasks.a r1/a/2 a 2 [1,2e3]`,
		`f.tasks.b r1/b/2 b 2 [1,2e3]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tasks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(plan.Manifest.Tasks) != 6 {
		t.Errorf("manifest has %d tasks", len(plan.Manifest.Tasks))
	}
}

func TestRejects(t *testing.T) {
	items := flow(t, `    fanout: {mode: items, items: legs, max_tasks: 5}
    limits: {max_payload_bytes: 64}
    targets: [{name: a}, {name: b}]
`)
	static := flow(t, "    limits: {max_payload_bytes: 16}\n    targets: [{name: a}]\n")
	for _, tc := range []struct {
		name    string
		f       *topology.Flow
		req     schemas.Request
		wantErr string // "" wants a plan
	}{
		{"missing request id", static, schemas.Request{Flow: "f", Payload: []byte(`{}`)}, "missing request id"},
		{"request id too long", static, schemas.Request{RequestID: strings.Repeat("r", schemas.MaxRequestIDBytes+1), Flow: "f"}, "request id of 1025 bytes exceeds 1024"},
		{"longest request id", static, schemas.Request{RequestID: strings.Repeat("r", schemas.MaxRequestIDBytes), Flow: "f"}, ""},
		{"request id not UTF-8", static, schemas.Request{RequestID: "r\xff", Flow: "f"}, "request id is not valid UTF-8"},
		{"request id with CR LF", static, schemas.Request{RequestID: "r1\r\nX-Injected: 1", Flow: "f"}, "request id has control character U+000D at byte 2"},
		{"request id with a tab", static, schemas.Request{RequestID: "r\t1", Flow: "f"}, "request id has control character U+0009"},
		{"request id with a C1 control", static, schemas.Request{RequestID: "r\u00851", Flow: "f"}, "request id has control character U+0085"},
		{"request id with a leading space", static, schemas.Request{RequestID: " r1", Flow: "f"}, "request id begins or ends with white space"},
		{"request id with a trailing space", static, schemas.Request{RequestID: "r1 ", Flow: "f"}, "request id begins or ends with white space"},
		{"request id with inner space and non-ASCII", static, schemas.Request{RequestID: "commande n° 7", Flow: "f"}, ""},
		{"wrong flow", static, schemas.Request{RequestID: "r1", Flow: "g"}, `unknown flow "g": this is flow "f"'s request topic`},
		{"no flow", static, schemas.Request{RequestID: "r1"}, `unknown flow "": this is flow "f"'s request topic`},
		{"oversize payload", static, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"x":"123456789"}`)}, "payload of 17 bytes exceeds limits.max_payload_bytes 16"},
		{"payload at the limit", static, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"x":"12345678"}`)}, ""},
		{"static payload need not be JSON", static, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`<xml/>`)}, ""},
		{"max_tasks exceeded", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": [1, 2, 3]}`)}, "fan-out of 6 tasks exceeds fanout.max_tasks 5"},
		{"max_tasks not exceeded", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": [1, 2]}`)}, ""},
		{"empty items", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": []}`)}, "items fan-out: legs is empty: no task to run"},
		{"non-JSON payload", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`legs: [1]`)}, "items fan-out: payload: not valid JSON"},
		{"trailing data", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": [1]} {}`)}, "items fan-out: payload: not valid JSON: trailing data after the value"},
		{"items missing", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"leg": [1]}`)}, "items fan-out: payload: field missing: legs"},
		{"items not a list", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": "1,2"}`)}, "items fan-out: payload: field of the wrong type: legs is a string, want an array"},
		{"items payload oversize", items, schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": [1], "pad": "` + strings.Repeat("x", 64) + `"}`)}, "payload of 88 bytes exceeds limits.max_payload_bytes 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := planner(t, tc.f, 3).Plan(&tc.req, 0, 0, 0)
			if tc.wantErr == "" {
				if err != nil || plan == nil {
					t.Fatalf("plan %v error %v", plan, err)
				}
				return
			}
			var re *scatter.RejectError
			if !errors.As(err, &re) || !scatter.IsReject(err) {
				t.Fatalf("error %v (%T), want a *RejectError", err, err)
			}
			if !strings.HasPrefix(re.Reason, tc.wantErr) || err.Error() != "scatter: "+re.Reason {
				t.Errorf("reason %q, want %q", re.Reason, tc.wantErr)
			}
			if plan != nil {
				t.Error("a plan with the error")
			}
		})
	}
	if scatter.IsReject(errors.New("other")) || scatter.IsReject(nil) {
		t.Error("IsReject of another error")
	}
	if scatter.IsReject(fmt.Errorf("wrapped: %w", &scatter.RejectError{Reason: "x"})) != true {
		t.Error("IsReject does not unwrap")
	}
}

// TestRejectKinds: each rule a request breaks has its kind, the value of
// the dead letter's sg-reason-kind header.
func TestRejectKinds(t *testing.T) {
	items := flow(t, "    fanout: {mode: items, items: legs, max_tasks: 1}\n    limits: {max_payload_bytes: 64}\n    targets: [{name: a}, {name: b}]\n")
	p := planner(t, items, 3)
	for _, tc := range []struct {
		req  schemas.Request
		kind string
	}{
		{schemas.Request{Flow: "f"}, schemas.KindMissingRequestID},
		{schemas.Request{RequestID: strings.Repeat("r", schemas.MaxRequestIDBytes+1), Flow: "f"}, schemas.KindInvalidRequestID},
		{schemas.Request{RequestID: "r\xff", Flow: "f"}, schemas.KindInvalidRequestID},
		{schemas.Request{RequestID: "r\n", Flow: "f"}, schemas.KindInvalidRequestID},
		{schemas.Request{RequestID: "\u00a0r", Flow: "f"}, schemas.KindInvalidRequestID},
		{schemas.Request{RequestID: "r1", Flow: "g"}, schemas.KindUnknownFlow},
		{schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(strings.Repeat("x", 65))}, schemas.KindOversize},
		{schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": [1]}`)}, schemas.KindFanout},
		{schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{"legs": 1}`)}, schemas.KindFanout},
	} {
		_, err := p.Plan(&tc.req, 0, 0, 0)
		var re *scatter.RejectError
		if !errors.As(err, &re) || re.Kind != tc.kind {
			t.Errorf("%+v: %v, want kind %s", tc.req, err, tc.kind)
		}
	}
	_, err := p.Decode([]byte("junk"))
	if re := (*scatter.RejectError)(nil); !errors.As(err, &re) || re.Kind != schemas.KindUndecodable {
		t.Errorf("Decode(junk): %v, want kind %s", err, schemas.KindUndecodable)
	}
}

func TestQuorumFromTaskCount(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		payload    string
		tasks      int
		quorum     int32
		maxFail    int32
	}{
		{"majority of 3 targets", "    targets: [{name: a}, {name: b}, {name: c}]\n    strategy: {type: quorum, quorum: majority}\n", `{}`, 3, 2, -1},
		{"majority of 4 targets", "    targets: [{name: a}, {name: b}, {name: c}, {name: d}]\n    strategy: {type: quorum, quorum: majority}\n", `{}`, 4, 3, -1},
		{"majority of 2 items x 3 targets", "    fanout: {mode: items, items: l}\n    targets: [{name: a}, {name: b}, {name: c}]\n    strategy: {type: quorum, quorum: majority, max_failures: 2}\n", `{"l": [1, 2]}`, 6, 4, 2},
		{"majority of 1 item", "    fanout: {mode: items, items: l}\n    targets: [{name: a}]\n    strategy: {type: quorum, quorum: majority}\n", `{"l": [1]}`, 1, 1, -1},
		{"a number", "    fanout: {mode: items, items: l}\n    targets: [{name: a}]\n    strategy: {type: quorum, quorum: 2}\n", `{"l": [1, 2, 3]}`, 3, 2, -1},
		{"not a quorum", "    targets: [{name: a}, {name: b}]\n    strategy: {type: first, max_failures: 0}\n", `{}`, 2, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := flow(t, tc.body)
			plan, err := planner(t, f, 3).Plan(&schemas.Request{RequestID: "r", Flow: "f", Payload: []byte(tc.payload)}, 0, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			m := plan.Manifest
			if len(m.Tasks) != tc.tasks || m.Quorum != tc.quorum || m.MaxFailures != tc.maxFail || m.Strategy != f.Strategy.Type {
				t.Errorf("tasks %d quorum %d max failures %d strategy %s, want %d %d %d", len(m.Tasks), m.Quorum, m.MaxFailures, m.Strategy, tc.tasks, tc.quorum, tc.maxFail)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	p := planner(t, flow(t, "    targets: [{name: a}]\n"), 1)
	in := &schemas.Request{RequestID: "r1", Flow: "f", Payload: []byte(`{}`), ContentType: "application/json", Attributes: schemas.AttributesOf(map[string]string{"k": "v"})}
	b, err := schemas.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Decode(b)
	if err != nil || !reflect.DeepEqual(got, in) {
		t.Errorf("decode: %+v %v", got, err)
	}
	task, _ := schemas.Encode(&schemas.Task{RequestID: "r1"})
	for _, bad := range [][]byte{nil, []byte("junk"), b[:len(b)-3], task} {
		if _, err := p.Decode(bad); !scatter.IsReject(err) || !strings.Contains(err.Error(), "scatter: undecodable request: schemas:") {
			t.Errorf("Decode(% x): %v", bad, err)
		}
	}
}

func TestNewPlanner(t *testing.T) {
	f := flow(t, "    targets: [{name: a}]\n")
	for _, n := range []int32{0, -1} {
		if _, err := scatter.NewPlanner(f, n, nil); err == nil || err.Error() != fmt.Sprintf("scatter: results topic f.results has %d partitions", n) {
			t.Errorf("NewPlanner(%d): %v", n, err)
		}
	}
	// A flow built without validation cannot make manifests the gather
	// would dead-letter.
	for _, mod := range []func(f *topology.Flow){
		func(f *topology.Flow) { f.Limits.MaxTimeout.D = f.Timeout.D - time.Millisecond },
		func(f *topology.Flow) { f.Timeout.D = 0 },
		func(f *topology.Flow) { f.Timeout.D = time.Microsecond },
	} {
		f := flow(t, "    targets: [{name: a}]\n")
		mod(f)
		if _, err := scatter.NewPlanner(f, 1, nil); err == nil || !strings.Contains(err.Error(), "is not within 1ms and limits.max_timeout") {
			t.Errorf("NewPlanner(timeout %s, max_timeout %s): %v", f.Timeout.D, f.Limits.MaxTimeout.D, err)
		}
	}
}

// TestDeadlineSaturates: a task's deadline never wraps into the past.
func TestDeadlineSaturates(t *testing.T) {
	p := planner(t, flow(t, "    targets: [{name: a}]\n"), 1)
	for _, now := range []int64{math.MaxInt64 - 1999, math.MaxInt64 - 500, math.MaxInt64} {
		plan, err := p.Plan(&schemas.Request{RequestID: "r1", Flow: "f"}, 0, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := plan.Tasks[0].Task.DeadlineMs; got != math.MaxInt64 {
			t.Errorf("now %d: deadline %d, want %d", now, got, int64(math.MaxInt64))
		}
	}
}

// Partition must agree with the partitioner of a keyed Kafka producer,
// since workers and the scatter both route by it.
func TestPartitionAgreesWithFranzGo(t *testing.T) {
	part := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	keys := []string{"", "a", "ab", "abc", "abcd", "abcde", "r1", "request-0001", "日本語", "\x00\xff\x80", strings.Repeat("k", 1000)}
	for i := range 2000 {
		keys = append(keys, fmt.Sprintf("req-%d", i), fmt.Sprintf("%x", i*7919))
	}
	for _, n := range []int32{1, 2, 3, 7, 12, 64, 1000} {
		hits := make(map[int32]int)
		for _, k := range keys {
			got := scatter.Partition(k, n)
			want := int32(part.Partition(&kgo.Record{Key: []byte(k)}, int(n)))
			if got != want {
				t.Fatalf("Partition(%q, %d) = %d, franz-go says %d", k, n, got, want)
			}
			if got < 0 || got >= n {
				t.Fatalf("Partition(%q, %d) = %d", k, n, got)
			}
			hits[got]++
		}
		if n <= 64 && len(hits) != int(n) {
			t.Errorf("%d keys use %d of %d partitions", len(keys), len(hits), n)
		}
	}
}

// A request that cannot be decoded because the schema registry does not
// answer is not dead-lettered: it waits.
func TestDecodeWaitsForTheRegistry(t *testing.T) {
	codec := schemas.NewCodec()
	codec.SetSchemaSource(schemas.SchemaSourceFunc(func(context.Context, uint32) (string, error) {
		return "", errors.New("connection refused") // a registry that does not answer
	}), 0)
	f := flow(t, "    targets: [{name: a}]\n")
	p, err := scatter.NewPlanner(f, 3, codec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Decode([]byte{0, 0, 0, 0, 42, 2, 'x'})
	var rej *scatter.RejectError
	if !errors.Is(err, schemas.ErrRegistryUnavailable) || errors.As(err, &rej) {
		t.Fatalf("Decode = %v; want ErrRegistryUnavailable, not a rejection", err)
	}
}
