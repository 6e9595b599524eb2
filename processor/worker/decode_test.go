package worker_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/processor/worker"
	"github.com/scattergather/scattergather/schemas"
)

func TestDecode(t *testing.T) {
	doc := "flows:\n  - name: f\n    timeout: 1s\n    partitions: 3\n    targets: [{name: a}, {name: b}]\n"
	topo, err := topology.Parse("t.yaml", []byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	d := worker.NewDecoder(topo.Flows[0], "a", nil)
	good := func(change func(*schemas.Task)) []byte {
		tk := &schemas.Task{RequestID: "r1", Flow: "f", TaskID: "r1/a", Target: "a", Item: schemas.NoItem,
			Payload: []byte(`{}`), ContentType: schemas.ContentTypeJSON, ResultsPartition: 2}
		if change != nil {
			change(tk)
		}
		b, err := schemas.Encode(tk)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	request, err := schemas.Encode(&schemas.Request{RequestID: "r1", Flow: "f"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		value  []byte
		kind   string // "" wants a task
		reason string
	}{
		{"valid", good(nil), "", ""},
		{"last results partition", good(func(tk *schemas.Task) { tk.ResultsPartition = 0 }), "", ""},
		{"not Avro", []byte("{}"), schemas.KindUndecodable, "undecodable task: schemas:"},
		{"a request in the task topic", request, schemas.KindUndecodable, "undecodable task: schemas:"},
		{"another flow", good(func(tk *schemas.Task) { tk.Flow = "g" }), schemas.KindUnknownFlow, `task of flow "g" in a task topic of flow "f"`},
		{"another target", good(func(tk *schemas.Task) { tk.Target = "b" }), schemas.KindWrongTarget, `task for target "b", which this worker does not serve here (topic of target "a")`},
		{"a target the flow does not have", good(func(tk *schemas.Task) { tk.Target = "z" }), schemas.KindWrongTarget, `task for target "z", which this worker does not serve here (topic of target "a")`},
		{"another target without ids", good(func(tk *schemas.Task) { tk.Target, tk.TaskID = "b", "" }), schemas.KindInvalidTask, "task without request id or task id"},
		{"another target and no results partition", good(func(tk *schemas.Task) { tk.Target, tk.ResultsPartition = "b", 3 }), schemas.KindInvalidTask, "task names results partition 3 of 3"},
		{"another flow and target", good(func(tk *schemas.Task) { tk.Flow, tk.Target = "g", "b" }), schemas.KindUnknownFlow, `task of flow "g" in a task topic of flow "f"`},
		{"no request id", good(func(tk *schemas.Task) { tk.RequestID = "" }), schemas.KindInvalidTask, "task without request id or task id"},
		{"no task id", good(func(tk *schemas.Task) { tk.TaskID = "" }), schemas.KindInvalidTask, "task without request id or task id"},
		{"results partition past the last", good(func(tk *schemas.Task) { tk.ResultsPartition = 3 }), schemas.KindInvalidTask, "task names results partition 3 of 3"},
		{"negative results partition", good(func(tk *schemas.Task) { tk.ResultsPartition = -1 }), schemas.KindInvalidTask, "task names results partition -1 of 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task, err := d.Decode(tc.value)
			if tc.kind == "" {
				if err != nil || task == nil || task.RequestID != "r1" {
					t.Fatalf("task %+v error %v", task, err)
				}
				return
			}
			var re *worker.RejectError
			if !errors.As(err, &re) || !worker.IsReject(fmt.Errorf("wrapped: %w", err)) {
				t.Fatalf("error %v (%T), want a *RejectError", err, err)
			}
			if re.Kind != tc.kind || !strings.HasPrefix(re.Reason, tc.reason) || err.Error() != "worker: "+re.Reason {
				t.Errorf("%s %q, want %s %q", re.Kind, re.Reason, tc.kind, tc.reason)
			}
			if task != nil {
				t.Error("a task with the error")
			}
			// Only a task of this flow with its ids and a results
			// partition, for another target, can be answered.
			res := re.Answer("w1")
			if tc.kind != schemas.KindWrongTarget {
				if re.Task != nil || res != nil {
					t.Errorf("an answer %+v to a record that cannot have one", res)
				}
				return
			}
			var tk schemas.Task
			if err := schemas.Default.DecodeInto(tc.value, &tk); err != nil {
				t.Fatal(err)
			}
			want := &schemas.Result{RequestID: tk.RequestID, Flow: tk.Flow, TaskID: tk.TaskID, Target: tk.Target, Item: tk.Item,
				Status: schemas.StatusError, Payload: []byte{}, ContentType: schemas.ContentTypeJSON, Error: "worker: " + re.Reason, Worker: "w1"}
			if !reflect.DeepEqual(res, want) || !reflect.DeepEqual(re.Task, &tk) {
				t.Errorf("answer\n %+v\nwant\n %+v\n(task %+v)", res, want, re.Task)
			}
			if _, err := schemas.Encode(res); err != nil {
				t.Errorf("encode the answer: %v", err)
			}
		})
	}
	if worker.IsReject(errors.New("other")) || worker.IsReject(nil) {
		t.Error("IsReject of another error")
	}
}
