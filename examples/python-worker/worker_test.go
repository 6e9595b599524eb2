package pythonworker_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

// price is the Go twin of worker.py's price function: base + n%3*10 for a
// payload {"n": n}.
func price(base int) worker.Handler {
	return worker.HandlerFunc(func(_ context.Context, t *schemas.Task) ([]byte, error) {
		var req struct{ N *int }
		if err := json.Unmarshal(t.Payload, &req); err != nil || req.N == nil {
			return nil, fmt.Errorf(`payload has no integer "n"`)
		}
		return fmt.Appendf(nil, `{"price": %d}`, base+*req.N%3*10), nil
	})
}

// python installs the worker's environment with setup.sh (a no-op once
// the cached venv matches requirements.txt) and returns its interpreter.
func python(t *testing.T) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", "setup.sh")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := fmt.Sprintf("setup.sh: %v\n%s", err, stderr.String())
		if os.Getenv(processortest.EnvRequire) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1]
}

// lineWriter passes each line the worker logs to the test log, and closes
// assigned at the first line that says it has partitions.
type lineWriter struct {
	t        *testing.T
	buf      []byte
	once     sync.Once
	assigned chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.t.Log(line)
		if strings.Contains(line, "partitions assigned") {
			w.once.Do(func() { close(w.assigned) })
		}
	}
}

// pyWorker is a running worker.py.
type pyWorker struct {
	cmd    *exec.Cmd
	exited chan error // receives the exit once
}

// startPython runs worker.py for target of f, with extra arguments, and
// returns once it has been assigned partitions of the task topic. Unless
// the test waits for its exit itself (wait), the worker runs until the test
// ends and must then stop cleanly on SIGTERM.
func startPython(t *testing.T, py string, topo *topology.Topology, f *topology.Flow, target string, extra ...string) *pyWorker {
	t.Helper()
	out := &lineWriter{t: t, assigned: make(chan struct{})}
	args := append([]string{"worker.py",
		"--bootstrap-servers", strings.Join(topo.Kafka.Brokers, ","),
		"--flow", f.Name, "--target", target,
		"--group", topo.Group(f, "worker."+target),
		"--tasks-topic", f.Target(target).Topic,
		"--results-topic", f.Topics.Results,
		"--dead-letter-topic", f.Topics.DeadLetter,
	}, extra...)
	cmd := exec.Command(py, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker.py: %v", err)
	}
	w := &pyWorker{cmd: cmd, exited: make(chan error, 1)}
	go func() { w.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return // waited for by the test
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-w.exited:
			if err != nil {
				t.Errorf("worker.py did not stop cleanly on SIGTERM: %v", err)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-w.exited
			t.Errorf("worker.py still running a minute after SIGTERM")
		}
	})
	select {
	case <-out.assigned:
	case err := <-w.exited:
		t.Fatalf("worker.py exited before it was assigned partitions: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("worker.py not assigned partitions after 2m")
	}
	return w
}

// wait waits for the worker to exit by itself and returns its exit code.
func (w *pyWorker) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-w.exited:
		if err != nil && w.cmd.ProcessState == nil {
			t.Fatalf("worker.py: %v", err)
		}
		return w.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("worker.py still running after %s", timeout)
		return -1
	}
}

// TestIntegrationPythonWorkerFingerprints checks that worker.py derives
// the same fingerprints from the .avsc files as the Go codec.
func TestIntegrationPythonWorkerFingerprints(t *testing.T) {
	py := python(t)
	out, err := exec.Command(py, "worker.py", "--fingerprints").Output()
	if err != nil {
		t.Fatalf("worker.py --fingerprints: %v", err)
	}
	task, result := schemas.Default.Fingerprint(schemas.KindTask), schemas.Default.Fingerprint(schemas.KindResult)
	want := fmt.Sprintf("task %s\nresult %s\n", hex.EncodeToString(task[:]), hex.EncodeToString(result[:]))
	if string(out) != want {
		t.Errorf("worker.py fingerprints:\n%s\nwant:\n%s", out, want)
	}
}

// TestIntegrationPythonWorker runs a flow whose target "py" is served by
// worker.py while Go workers serve "a" and "b", and checks every
// aggregate: each request once, with the Python answers present and right,
// and each Python result in the results topic exactly once.
func TestIntegrationPythonWorker(t *testing.T) {
	brokers := processortest.Brokers(t)
	py := python(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 30s
targets: [{name: a}, {name: py}, {name: b}]
strategy: {type: all}
consolidate: {type: collect}
`)
	processortest.CreateTopics(t, topo, f)
	bases := map[string]int{"a": 100, "py": 95, "b": 105}
	const instance = "python-test"
	startPython(t, py, topo, f, "py", "--instance", instance, "--base-price", fmt.Sprint(bases["py"]))
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(),
		kafka.WithHandler("a", price(bases["a"])), kafka.WithHandler("b", price(bases["b"])))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)

	reqs := requests(f, n, bad)
	processortest.Send(t, topo, reqs...)
	checkAggregates(t, processortest.Aggregates(t, topo, f, n, 3*time.Minute), bases)
	checkPythonResults(t, topo, f, n, len(bases), instance)

	// A task of the flow for another target is answered ERROR, not
	// dead-lettered (of a request the gather does not know, its answer is
	// late); a record that is no task goes to the dead-letter topic, as the
	// Go workers send it, and the worker goes on. One key: one partition,
	// answered in this order.
	stray, err := schemas.Encode(&schemas.Task{RequestID: "stray", Flow: f.Name, TaskID: "stray/b", Target: "b", Item: schemas.NoItem,
		Payload: []byte(`{"n": 1}`), ContentType: schemas.ContentTypeJSON, DeadlineMs: time.Now().Add(time.Hour).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	processortest.SendRaw(t, topo, f.Target("py").Topic, []byte("stray"), stray, []byte("not avro"))
	dl := processortest.Records(t, topo, f.Topics.DeadLetter, 1, time.Minute)
	if len(dl) != 1 || string(dl[0].Value) != "not avro" || kafka.Header(dl[0], schemas.HeaderReasonKind) != "undecodable" ||
		kafka.Header(dl[0], schemas.HeaderStage) != "worker" || kafka.Header(dl[0], schemas.HeaderTopic) != f.Target("py").Topic {
		t.Errorf("dead letters: %d, first %+v; want the junk record, undecodable, from the worker", len(dl), dl[0])
	}
	late := processortest.Records(t, topo, f.Topics.Late, 1, time.Minute)
	var res schemas.Result
	if len(late) != 1 || schemas.DecodeInto(late[0].Value, &res) != nil {
		t.Fatalf("late records: %d, want the answer to the stray task", len(late))
	}
	want := `worker: task for target "b", which this worker does not serve here (topic of target "py")`
	if res.RequestID != "stray" || res.TaskID != "stray/b" || res.Target != "b" || res.Status != schemas.StatusError ||
		res.Error != want || res.Worker != instance || res.Attempts != 0 {
		t.Errorf("answer to the stray task %+v, want ERROR %q from %s", res, want, instance)
	}
}

// The requests of a test: n of them, the last bad ones without "n", which
// every target fails.
const n, bad = 40, 2

func requests(f *topology.Flow, n, bad int) []*schemas.Request {
	reqs := make([]*schemas.Request, n)
	for i := range reqs {
		payload := fmt.Appendf(nil, `{"n": %d}`, i)
		if i >= n-bad {
			payload = []byte(`{"n": "none"}`)
		}
		reqs[i] = &schemas.Request{RequestID: fmt.Sprintf("req-%03d", i), Flow: f.Name, Payload: payload, ContentType: schemas.ContentTypeJSON}
	}
	return reqs
}

// checkAggregates checks the aggregates of requests(_, n, bad) in a flow
// that collects the answers of targets priced at bases: each request
// complete, every target's price right, no duplicate counted.
func checkAggregates(t *testing.T, aggs map[string]*schemas.Aggregate, bases map[string]int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("req-%03d", i)
		a := aggs[id]
		if a == nil {
			continue // Aggregates reported it
		}
		if i >= n-bad {
			checkFailed(t, a, len(bases))
			continue
		}
		var res struct {
			Answers []struct {
				Target string
				TaskID string `json:"task_id"`
				Value  struct{ Price *int }
			}
		}
		if err := json.Unmarshal(a.Result, &res); err != nil {
			t.Fatalf("%s: result %s: %v", id, a.Result, err)
		}
		if a.Outcome != schemas.OutcomeComplete || len(a.Answered) != len(bases) || len(res.Answers) != len(bases) || a.Duplicates != 0 {
			t.Errorf("%s: outcome %s, %d answered, %d answers, %d duplicates; want complete, %d, %d, 0: %s",
				id, a.Outcome, len(a.Answered), len(res.Answers), a.Duplicates, len(bases), len(bases), a.Result)
			continue
		}
		for _, ans := range res.Answers {
			want, ok := bases[ans.Target]
			want += i % 3 * 10
			if !ok || ans.Value.Price == nil || *ans.Value.Price != want || ans.TaskID != id+"/"+ans.Target {
				t.Errorf("%s: answer %+v of %s, want price %d for task %s/%s", id, ans, ans.Target, want, id, ans.Target)
			}
		}
		if i < 2 {
			t.Logf("aggregate %s: outcome %s, result %s", id, a.Outcome, a.Result)
		}
	}
}

// checkFailed checks the aggregate of a request every target fails: the
// Python worker's ERROR counts like the Go workers'.
func checkFailed(t *testing.T, a *schemas.Aggregate, targets int) {
	t.Helper()
	if a.Outcome != schemas.OutcomeFailed || len(a.Failed) != targets || len(a.Answered) != 0 || a.Duplicates != 0 {
		t.Errorf("%s: outcome %s, %d failed, %d answered, %d duplicates; want failed, %d failed", a.RequestID, a.Outcome, len(a.Failed), len(a.Answered), a.Duplicates, targets)
		return
	}
	for _, ans := range a.Failed {
		if ans.Target == "py" {
			if !strings.Contains(ans.Error, `no integer "n"`) {
				t.Errorf("%s: Python failure %q, want the function's error", a.RequestID, ans.Error)
			}
			t.Logf("aggregate %s: outcome %s, Python failure %q", a.RequestID, a.Outcome, ans.Error)
		}
	}
}

// checkPythonResults reads the results topic read_committed and checks
// that worker.py answered every task of its target exactly once.
func checkPythonResults(t *testing.T, topo *topology.Topology, f *topology.Flow, n, targets int, instance string) {
	t.Helper()
	// Each request wrote a manifest and a result per target; ticks come on top.
	recs := processortest.Records(t, topo, f.Topics.Results, (1+targets)*n, time.Minute)
	seen := map[string]int{}
	manifestAt := map[string]int32{} // request id: the partition of its manifest
	var results []*schemas.Result
	at := map[*schemas.Result]int32{}
	for _, r := range recs {
		v, err := schemas.Decode(r.Value)
		if err != nil {
			t.Errorf("results record at %d/%d: %v", r.Partition, r.Offset, err)
			continue
		}
		switch v := v.(type) {
		case *schemas.Manifest:
			manifestAt[v.RequestID] = r.Partition
		case *schemas.Result:
			if v.Target != "py" {
				continue
			}
			seen[v.TaskID]++
			results = append(results, v)
			at[v] = r.Partition
			if v.Worker != instance || string(r.Key) != v.RequestID {
				t.Errorf("result of %s: worker %q, key %q; want %q, %q", v.TaskID, v.Worker, r.Key, instance, v.RequestID)
			}
		}
	}
	for _, res := range results {
		if p, ok := manifestAt[res.RequestID]; !ok || at[res] != p {
			t.Errorf("result of %s in partition %d, its manifest in %d (found: %v)", res.TaskID, at[res], p, ok)
		}
	}
	for i := range n {
		id := fmt.Sprintf("req-%03d/py", i)
		if seen[id] != 1 {
			t.Errorf("task %s has %d committed Python results, want exactly 1", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("%d Python task ids in the results topic, want %d", len(seen), n)
	}
}

// TestIntegrationPythonWorkerCrash makes worker.py exit in the middle of
// a transaction, after writing results it never commits, and restarts it:
// the results topic then holds more Python results than tasks, yet a
// read_committed reader (the gather) sees each exactly once.
func TestIntegrationPythonWorkerCrash(t *testing.T) {
	brokers := processortest.Brokers(t)
	py := python(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 60s
targets: [{name: a}, {name: py}]
strategy: {type: all}
consolidate: {type: collect}
`)
	processortest.CreateTopics(t, topo, f)
	bases := map[string]int{"a": 100, "py": 95}
	const instance = "python-crash"
	args := []string{"--instance", instance, "--base-price", fmt.Sprint(bases["py"]), "--batch", "8"}
	first := startPython(t, py, topo, f, "py", append(args, "--crash-after", "20")...)
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), kafka.WithHandler("a", price(bases["a"])))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)
	processortest.Send(t, topo, requests(f, n, bad)...)
	if code := first.wait(t, 2*time.Minute); code != 3 {
		t.Fatalf("worker.py --crash-after exited with %d, want 3", code)
	}
	// The same instance: its transactional.id aborts the open transaction,
	// its group.instance.id takes the partitions back.
	startPython(t, py, topo, f, "py", args...)
	checkAggregates(t, processortest.Aggregates(t, topo, f, n, 3*time.Minute), bases)
	checkPythonResults(t, topo, f, n, len(bases), instance)
	if all := countResults(t, topo, f.Topics.Results, "py"); all <= n {
		t.Errorf("%d Python results in the log, aborted ones included; want more than %d: the crash left no open transaction", all, n)
	} else {
		t.Logf("%d Python results in the log, %d of them committed", all, n)
	}
}

// countResults counts the results of target in topic as a read_uncommitted
// reader sees them: aborted ones too.
func countResults(t *testing.T, topo *topology.Topology, topic, target string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(topo.Kafka.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	pos := map[int32]int64{}
	count := 0
	for {
		done := true
		for p, o := range end {
			done = done && pos[p] >= o
		}
		if done {
			return count
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s to its end: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			if v, err := schemas.Decode(r.Value); err == nil {
				if res, ok := v.(*schemas.Result); ok && res.Target == target {
					count++
				}
			}
		})
	}
}
