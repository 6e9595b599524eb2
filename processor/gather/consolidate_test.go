package gather_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/payload"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// in is an OK answer of target for request r, of a static fan-out.
func in(target, payload string) gather.Input {
	return gather.Input{TaskID: "r/" + target, Target: target, Item: -1, Payload: []byte(payload)}
}

// item is an OK answer of target for item i of an items fan-out.
func item(target string, i int32, payload string) gather.Input {
	return gather.Input{TaskID: fmt.Sprintf("r/%s/%d", target, i), Target: target, Item: i, Payload: []byte(payload)}
}

func TestConsolidations(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       gather.Consolidator
		in      []gather.Input
		want    string
		wantErr string
	}{
		// collect
		{"collect/zero inputs", gather.Collect(), nil, `{"answers":[]}`, ""},
		{"collect/compacts and keeps numbers", gather.Collect(), []gather.Input{
			in("a", ` { "x" : 0.1, "b" : [1e3, 1.50] } `),
			item("b", 0, `"<s>"`),
		}, `{"answers":[{"target":"a","task_id":"r/a","value":{"b":[1e3,1.50],"x":0.1}},{"target":"b","task_id":"r/b/0","item":0,"value":"<s>"}]}`, ""},
		{"collect/not JSON", gather.Collect(), []gather.Input{in("a", `{}`), in("b", `{`)}, "", "target b: payload: not valid JSON"},

		// min / max
		{"min/zero inputs", gather.MinBy("price"), nil, `null`, ""},
		{"min/smallest", gather.MinBy("price"), []gather.Input{
			in("a", `{"price": 10}`), in("b", `{"price": 5, "airline": "B"}`), in("c", `{"price": 7}`),
		}, `{"target":"b","task_id":"r/b","value":5,"answer":{"airline":"B","price":5}}`, ""},
		{"min/tie goes to the earlier target", gather.MinBy("price"), []gather.Input{
			in("a", `{"price": 9}`), in("b", `{"price": 5, "n": "b"}`), in("c", `{"price": 5.0, "n": "c"}`),
		}, `{"target":"b","task_id":"r/b","value":5,"answer":{"n":"b","price":5}}`, ""},
		{"min/numbers kept exactly", gather.MinBy("price"), []gather.Input{
			in("a", `{"price": 1e3}`), in("b", `{"price": 0.1}`),
		}, `{"target":"b","task_id":"r/b","value":0.1,"answer":{"price":0.1}}`, ""},
		{"min/negative", gather.MinBy("delta"), []gather.Input{
			in("a", `{"delta": 0}`), in("b", `{"delta": -2.5e-1}`),
		}, `{"target":"b","task_id":"r/b","value":-2.5e-1,"answer":{"delta":-2.5e-1}}`, ""},
		{"min/nested field", gather.MinBy("offer.price"), []gather.Input{
			in("a", `{"offer": {"price": 3}}`), in("b", `{"offer": {"price": 2.50}}`),
		}, `{"target":"b","task_id":"r/b","value":2.50,"answer":{"offer":{"price":2.50}}}`, ""},
		{"min/array index", gather.MinBy("offers.1.price"), []gather.Input{
			in("a", `{"offers": [{"price": 1}, {"price": 8}]}`), in("b", `{"offers": [{"price": 9}, {"price": 4}]}`),
		}, `{"target":"b","task_id":"r/b","value":4,"answer":{"offers":[{"price":9},{"price":4}]}}`, ""},
		{"min/item shown", gather.MinBy("p"), []gather.Input{item("a", 1, `{"p":2}`), item("a", 0, `{"p":1}`)},
			`{"target":"a","task_id":"r/a/0","item":0,"value":1,"answer":{"p":1}}`, ""},
		{"min/integers beyond float64", gather.MinBy("price"), []gather.Input{
			in("a", `{"price": 9007199254740993}`), in("b", `{"price": 9007199254740992}`),
		}, `{"target":"b","task_id":"r/b","value":9007199254740992,"answer":{"price":9007199254740992}}`, ""},
		{"min/decimals beyond float64", gather.MinBy("price"), []gather.Input{
			in("a", `{"price": 0.30000000000000001}`), in("b", `{"price": 0.3}`),
		}, `{"target":"b","task_id":"r/b","value":0.3,"answer":{"price":0.3}}`, ""},
		{"min/beyond float64 range", gather.MinBy("price"), []gather.Input{
			in("a", `{"price": 1e-400}`), in("b", `{"price": 0}`), in("c", `{"price": -1e400}`),
		}, `{"target":"c","task_id":"r/c","value":-1e400,"answer":{"price":-1e400}}`, ""},
		{"min/missing field", gather.MinBy("price"), []gather.Input{in("a", `{"price": 1}`), in("b", `{"cost": 1}`)}, "", "target b: payload: field missing: price"},
		{"max/largest", gather.MaxBy("price"), []gather.Input{
			in("a", `{"price": 0.1}`), in("b", `{"price": 1e3}`), in("c", `{"price": 999.9}`),
		}, `{"target":"b","task_id":"r/b","value":1e3,"answer":{"price":1e3}}`, ""},
		{"max/tie goes to the earlier target", gather.MaxBy("price"), []gather.Input{
			in("a", `{"price": 1}`), in("b", `{"price": 7}`), in("c", `{"price": 7}`),
		}, `{"target":"b","task_id":"r/b","value":7,"answer":{"price":7}}`, ""},
		{"max/integers beyond float64", gather.MaxBy("price"), []gather.Input{
			in("a", `{"price": 9007199254740992}`), in("b", `{"price": 9007199254740993}`),
		}, `{"target":"b","task_id":"r/b","value":9007199254740993,"answer":{"price":9007199254740993}}`, ""},
		{"max/equal in other spellings: the earlier target", gather.MaxBy("price"), []gather.Input{
			in("a", `{"price": 2.50}`), in("b", `{"price": 25e-1}`), in("c", `{"price": 2.5}`),
		}, `{"target":"a","task_id":"r/a","value":2.50,"answer":{"price":2.50}}`, ""},
		{"max/beyond float64 range", gather.MaxBy("price"), []gather.Input{
			in("a", `{"price": 1e308}`), in("b", `{"price": 1e400}`),
		}, `{"target":"b","task_id":"r/b","value":1e400,"answer":{"price":1e400}}`, ""},
		{"max/zero inputs", gather.MaxBy("price"), nil, `null`, ""},

		// vote
		{"vote/zero inputs", gather.Vote("label"), nil, `null`, ""},
		{"vote/majority", gather.Vote("label"), []gather.Input{
			in("a", `{"label": "cat"}`), in("b", `{"label": "dog"}`), in("c", `{"label": "cat"}`),
		}, `{"value":"cat","votes":2,"voters":3,"agreement":0.6667,"tally":[{"value":"cat","votes":2,"targets":["a","c"]},{"value":"dog","votes":1,"targets":["b"]}]}`, ""},
		{"vote/tie goes to the value first seen", gather.Vote("label"), []gather.Input{
			in("a", `{"label": "dog"}`), in("b", `{"label": "cat"}`),
		}, `{"value":"dog","votes":1,"voters":2,"agreement":0.5,"tally":[{"value":"dog","votes":1,"targets":["a"]},{"value":"cat","votes":1,"targets":["b"]}]}`, ""},
		{"vote/objects compared canonically", gather.Vote("v"), []gather.Input{
			in("a", `{"v": {"x": 1}}`), in("b", `{"v": {"a": 1, "b": 2}}`), in("c", `{"v": {"b": 2, "a": 1}}`),
		}, `{"value":{"a":1,"b":2},"votes":2,"voters":3,"agreement":0.6667,"tally":[{"value":{"a":1,"b":2},"votes":2,"targets":["b","c"]},{"value":{"x":1},"votes":1,"targets":["a"]}]}`, ""},
		{"vote/unanimous nested", gather.Vote("r.ok"), []gather.Input{
			in("a", `{"r": {"ok": true}}`), in("b", `{"r": {"ok": true}}`),
		}, `{"value":true,"votes":2,"voters":2,"agreement":1,"tally":[{"value":true,"votes":2,"targets":["a","b"]}]}`, ""},
		{"vote/one number in many spellings, shown as first written", gather.Vote("n"), []gather.Input{
			in("a", `{"n": 1}`), in("b", `{"n": 1.0}`), in("c", `{"n": 10e-1}`),
		}, `{"value":1,"votes":3,"voters":3,"agreement":1,"tally":[{"value":1,"votes":3,"targets":["a","b","c"]}]}`, ""},
		{"vote/numbers by value, not by spelling", gather.Vote("n"), []gather.Input{
			in("a", `{"n": 2}`), in("b", `{"n": 1}`), in("c", `{"n": 1.0}`),
		}, `{"value":1,"votes":2,"voters":3,"agreement":0.6667,"tally":[{"value":1,"votes":2,"targets":["b","c"]},{"value":2,"votes":1,"targets":["a"]}]}`, ""},
		{"vote/spelling of the first in target order", gather.Vote("n"), []gather.Input{
			in("a", `{"n": 7}`), in("b", `{"n": 1.50}`), in("c", `{"n": 1.5}`),
		}, `{"value":1.50,"votes":2,"voters":3,"agreement":0.6667,"tally":[{"value":1.50,"votes":2,"targets":["b","c"]},{"value":7,"votes":1,"targets":["a"]}]}`, ""},
		{"vote/integers beyond float64 stay apart", gather.Vote("n"), []gather.Input{
			in("a", `{"n": 9007199254740993}`), in("b", `{"n": 9007199254740992}`), in("c", `{"n": 9007199254740992}`),
		}, `{"value":9007199254740992,"votes":2,"voters":3,"agreement":0.6667,"tally":[{"value":9007199254740992,"votes":2,"targets":["b","c"]},{"value":9007199254740993,"votes":1,"targets":["a"]}]}`, ""},
		{"vote/zero in every spelling", gather.Vote("n"), []gather.Input{
			in("a", `{"n": 0}`), in("b", `{"n": -0}`), in("c", `{"n": 0.00e5}`),
		}, `{"value":0,"votes":3,"voters":3,"agreement":1,"tally":[{"value":0,"votes":3,"targets":["a","b","c"]}]}`, ""},
		{"vote/strings by exact characters", gather.Vote("n"), []gather.Input{
			in("a", `{"n": "1.0"}`), in("b", `{"n": "1"}`), in("c", `{"n": 1}`), in("d", `{"n": "1"}`),
		}, `{"value":"1","votes":2,"voters":4,"agreement":0.5,"tally":[{"value":"1","votes":2,"targets":["b","d"]},{"value":"1.0","votes":1,"targets":["a"]},{"value":1,"votes":1,"targets":["c"]}]}`, ""},
		{"vote/numbers inside objects by value", gather.Vote("v"), []gather.Input{
			in("a", `{"v": {"p": 1.50, "q": [2]}}`), in("b", `{"v": {"q": [2.0], "p": 1.5}}`),
		}, `{"value":{"p":1.50,"q":[2]},"votes":2,"voters":2,"agreement":1,"tally":[{"value":{"p":1.50,"q":[2]},"votes":2,"targets":["a","b"]}]}`, ""},
		{"vote/array index", gather.Vote("l.0"), []gather.Input{
			in("a", `{"l": ["x", "y"]}`), in("b", `{"l": ["z"]}`), in("c", `{"l": ["z", "x"]}`),
		}, `{"value":"z","votes":2,"voters":3,"agreement":0.6667,"tally":[{"value":"z","votes":2,"targets":["b","c"]},{"value":"x","votes":1,"targets":["a"]}]}`, ""},
		{"vote/null is a value", gather.Vote("v"), []gather.Input{in("a", `{"v": null}`)},
			`{"value":null,"votes":1,"voters":1,"agreement":1,"tally":[{"value":null,"votes":1,"targets":["a"]}]}`, ""},

		// sum
		{"sum/zero inputs", gather.Sum("n"), nil, `{"sum":0,"count":0}`, ""},
		{"sum/one decimal stays", gather.Sum("n"), []gather.Input{in("a", `{"n": 0.1}`)}, `{"sum":0.1,"count":1}`, ""},
		{"sum/exponent", gather.Sum("n"), []gather.Input{in("a", `{"n": 1e3}`), in("b", `{"n": 24}`)}, `{"sum":1024,"count":2}`, ""},
		{"sum/negative", gather.Sum("n"), []gather.Input{in("a", `{"n": -1.5}`), in("b", `{"n": 1.5}`)}, `{"sum":0,"count":2}`, ""},
		{"sum/nested with index", gather.Sum("a.b.1"), []gather.Input{in("a", `{"a": {"b": [100, 2]}}`), in("b", `{"a": {"b": [0, 3]}}`)}, `{"sum":5,"count":2}`, ""},
		{"sum/decimals add exactly", gather.Sum("n"), []gather.Input{in("a", `{"n": 0.1}`), in("b", `{"n": 0.2}`)}, `{"sum":0.3,"count":2}`, ""},
		{"sum/prices without trailing zeros", gather.Sum("n"), []gather.Input{in("a", `{"n": 19.99}`), in("b", `{"n": 0.01}`), in("c", `{"n": 0.50}`)}, `{"sum":20.5,"count":3}`, ""},
		{"sum/integers beyond float64", gather.Sum("n"), []gather.Input{in("a", `{"n": 9007199254740993}`), in("b", `{"n": 1}`)}, `{"sum":9007199254740994,"count":2}`, ""},
		{"sum/beyond float64 range", gather.Sum("n"), []gather.Input{in("a", `{"n": 1e308}`), in("b", `{"n": 1e308}`)}, `{"sum":2E+308,"count":2}`, ""},
		{"sum/many digits", gather.Sum("n"), []gather.Input{in("a", `{"n": 1e40}`), in("b", `{"n": 1e-40}`)}, `{"sum":1.00000000000000000000000000000000000000000000000000000000000000000000000000000001E+40,"count":2}`, ""},
		{"sum/plain below 1e21", gather.Sum("n"), []gather.Input{in("a", `{"n": 4e20}`), in("b", `{"n": 5E+20}`)}, `{"sum":900000000000000000000,"count":2}`, ""},
		{"sum/exponent from 1e21", gather.Sum("n"), []gather.Input{in("a", `{"n": 5e20}`), in("b", `{"n": 5e20}`)}, `{"sum":1E+21,"count":2}`, ""},
		{"sum/plain down to 1e-7", gather.Sum("n"), []gather.Input{in("a", `{"n": 1e-7}`)}, `{"sum":0.0000001,"count":1}`, ""},
		{"sum/exponent below 1e-7", gather.Sum("n"), []gather.Input{in("a", `{"n": 1.5e-8}`), in("b", `{"n": -0}`)}, `{"sum":1.5E-8,"count":2}`, ""},
		{"sum/negative zero is zero", gather.Sum("n"), []gather.Input{in("a", `{"n": -0.0}`)}, `{"sum":0,"count":1}`, ""},
		{"sum/more than 1000 digits is an error", gather.Sum("n"), []gather.Input{in("a", `{"n": 1e600}`), in("b", `{"n": 1e-600}`)}, "", "target b: gather: sum needs more than 1000 significant digits: not exact"},
		{"sum/1001 digits is an error", gather.Sum("n"), []gather.Input{in("a", `{"n": 1e1000}`), in("b", `{"n": 1}`)}, "", "target b: gather: sum needs more than 1000 significant digits: not exact"},
		{"sum/1000 digits is exact", gather.Sum("n"), []gather.Input{in("a", `{"n": 1e999}`), in("b", `{"n": 1}`), in("c", `{"n": -1e999}`)}, `{"sum":1,"count":3}`, ""},
		{"sum/exponent out of range is an error", gather.Sum("n"), []gather.Input{in("a", `{"n": 9e100000}`), in("b", `{"n": 1e100000}`)}, "", "target b: gather: sum out of range"},
		{"sum/wrong type", gather.Sum("n"), []gather.Input{in("a", `{"n": "1"}`)}, "", "target a: payload: field of the wrong type: n is a string, want a number"},

		// merge
		{"merge/zero inputs", gather.Merge("hits", "", "", false, 0), nil, `{"items":[],"count":0,"total":0}`, ""},
		{"merge/concatenates in target order", gather.Merge("hits", "", "", false, 0), []gather.Input{
			in("a", `{"hits": [1, 2]}`), in("b", `{"hits": []}`), in("c", `{"hits": [3, 0.1]}`),
		}, `{"items":[1,2,3,0.1],"count":4,"total":4}`, ""},
		{"merge/key keeps the first in target order", gather.Merge("hits", "id", "", false, 0), []gather.Input{
			in("a", `{"hits": [{"id": 1, "src": "a"}, {"id": 2, "src": "a"}]}`), in("b", `{"hits": [{"id": 2, "src": "b"}, {"id": 3, "src": "b"}]}`),
		}, `{"items":[{"id":1,"src":"a"},{"id":2,"src":"a"},{"id":3,"src":"b"}],"count":3,"total":3}`, ""},
		{"merge/de-dup keeps the best-scored, desc, top", gather.Merge("hits", "id", "score", false, 2), []gather.Input{
			in("a", `{"hits": [{"id": "x", "score": 1}, {"id": "y", "score": 5}]}`),
			in("b", `{"hits": [{"id": "x", "score": 9}, {"id": "z", "score": 5}]}`),
		}, `{"items":[{"id":"x","score":9},{"id":"y","score":5}],"count":2,"total":3}`, ""},
		{"merge/de-dup keeps the best-scored, asc", gather.Merge("hits", "id", "score", true, 0), []gather.Input{
			in("a", `{"hits": [{"id": "x", "score": 9}, {"id": "y", "score": 5}]}`),
			in("b", `{"hits": [{"id": "z", "score": 5}, {"id": "x", "score": 1}]}`),
		}, `{"items":[{"id":"x","score":1},{"id":"y","score":5},{"id":"z","score":5}],"count":3,"total":3}`, ""},
		{"merge/sort ties keep target order", gather.Merge("hits", "", "s", false, 0), []gather.Input{
			in("a", `{"hits": [{"s": 1, "n": "a1"}, {"s": 2, "n": "a2"}]}`), in("b", `{"hits": [{"s": 2, "n": "b2"}, {"s": 1e0, "n": "b1"}]}`),
		}, `{"items":[{"n":"a2","s":2},{"n":"b2","s":2},{"n":"a1","s":1},{"n":"b1","s":1e0}],"count":4,"total":4}`, ""},
		{"merge/sort exactly beyond float64", gather.Merge("hits", "", "s", false, 0), []gather.Input{
			in("a", `{"hits": [{"s": 9007199254740992, "n": "a"}]}`), in("b", `{"hits": [{"s": 9007199254740993, "n": "b"}]}`),
		}, `{"items":[{"n":"b","s":9007199254740993},{"n":"a","s":9007199254740992}],"count":2,"total":2}`, ""},
		{"merge/numeric keys by value", gather.Merge("hits", "id", "", false, 0), []gather.Input{
			in("a", `{"hits": [{"id": 1, "src": "a"}, {"id": "1", "src": "a"}]}`), in("b", `{"hits": [{"id": 1.0, "src": "b"}, {"id": 2, "src": "b"}]}`),
		}, `{"items":[{"id":1,"src":"a"},{"id":"1","src":"a"},{"id":2,"src":"b"}],"count":3,"total":3}`, ""},
		{"merge/object keys compared canonically", gather.Merge("hits", "k", "", false, 0), []gather.Input{
			in("a", `{"hits": [{"k": {"a": 1, "b": 2}, "src": "a"}]}`), in("b", `{"hits": [{"k": {"b": 2, "a": 1}, "src": "b"}]}`),
		}, `{"items":[{"k":{"a":1,"b":2},"src":"a"}],"count":1,"total":1}`, ""},
		{"merge/nested path and sort", gather.Merge("r.hits", "", "m.s", true, 1), []gather.Input{
			in("a", `{"r": {"hits": [{"m": {"s": 3}}]}}`), in("b", `{"r": {"hits": [{"m": {"s": 0.5}}]}}`),
		}, `{"items":[{"m":{"s":0.5}}],"count":1,"total":2}`, ""},
		{"merge/top larger than the items", gather.Merge("hits", "", "", false, 10), []gather.Input{in("a", `{"hits": ["x"]}`)},
			`{"items":["x"],"count":1,"total":1}`, ""},
		{"merge/not a list", gather.Merge("hits", "", "", false, 0), []gather.Input{in("a", `{"hits": {}}`)}, "", "target a: payload: field of the wrong type: hits is an object, want an array"},
		{"merge/item without sort field", gather.Merge("hits", "", "s", false, 0), []gather.Input{in("a", `{"hits": [{"s": 1}, {}]}`)}, "", "target a: hits[1]: payload: field missing: s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.c.Consolidate(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("result %s error %v, want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("result\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not valid JSON: %s", got)
			}
			// Deterministic: the same inputs give the same bytes.
			again, err := tc.c.Consolidate(tc.in)
			if err != nil || string(again) != string(got) {
				t.Errorf("second run gave %s (%v)", again, err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	type cons struct {
		name string
		c    gather.Consolidator
	}
	collect := cons{"collect", gather.Collect()}
	minC := cons{"min", gather.MinBy("offer.price")}
	maxC := cons{"max", gather.MaxBy("offer.price")}
	voteC := cons{"vote", gather.Vote("offer.price")}
	sumC := cons{"sum", gather.Sum("offer.price")}
	mergeC := cons{"merge", gather.Merge("hits", "id", "score", false, 0)}
	numeric := []cons{minC, maxC, sumC}
	all := []cons{collect, minC, maxC, voteC, sumC, mergeC}

	for _, tc := range []struct {
		payload string
		cs      []cons
		want    error // nil: accepted
	}{
		{`not json`, all, payload.ErrNotJSON},
		{``, all, payload.ErrNotJSON},
		{`{"offer": {"price": 1}} {}`, all, payload.ErrNotJSON},
		{`{"offer": {"price": 1}}`, []cons{collect, minC, maxC, voteC, sumC}, nil},
		{`[1, 2]`, []cons{collect}, nil},
		{`[1, 2]`, []cons{minC, voteC, sumC, mergeC}, payload.ErrMissing},
		{`{"offer": {}}`, []cons{minC, maxC, voteC, sumC}, payload.ErrMissing},
		{`{"offer": 3}`, []cons{minC, voteC, sumC}, payload.ErrMissing},
		{`{"offer": {"price": "cheap"}}`, numeric, payload.ErrType},
		{`{"offer": {"price": "cheap"}}`, []cons{voteC}, nil},
		{`{"offer": {"price": null}}`, numeric, payload.ErrType},
		{`{"offer": {"price": 1e400}}`, numeric, nil},
		{`{"offer": {"price": 123456789012345678901234567890.123456789}}`, numeric, nil},
		{`{"offer": {"price": 1e100001}}`, numeric, payload.ErrType},
		{`{"offer": {"price": -1e-100001}}`, numeric, payload.ErrType},
		{`{"offer": {"price": 1e100001}}`, []cons{voteC}, nil},
		{`{"hits": [{"id": 1, "score": 1e100001}]}`, []cons{mergeC}, payload.ErrType},
		{`{"hits": []}`, []cons{mergeC}, nil},
		{`{"hits": [{"id": 1, "score": 2}]}`, []cons{mergeC}, nil},
		{`{"hits": {"id": 1}}`, []cons{mergeC}, payload.ErrType},
		{`{"hits": [{"score": 2}]}`, []cons{mergeC}, payload.ErrMissing},
		{`{"hits": [{"id": 1}]}`, []cons{mergeC}, payload.ErrMissing},
		{`{"hits": [{"id": 1, "score": "high"}]}`, []cons{mergeC}, payload.ErrType},
		{`{}`, []cons{mergeC}, payload.ErrMissing},
	} {
		for _, c := range tc.cs {
			err := c.c.Check([]byte(tc.payload))
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("%s.Check(%s): %v, want accepted", c.name, tc.payload, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("%s.Check(%s): %v, want %v", c.name, tc.payload, err, tc.want)
			}
		}
	}
}

// concatTargets is a custom consolidation registered below: the targets of
// the OK answers joined by the separator in consolidate.field.
func concatTargets(c topology.Consolidate) (gather.Consolidator, error) {
	if c.Field == "!" {
		return nil, errors.New("concat_targets: bad separator")
	}
	return gather.ConsolidatorFunc(func(in []gather.Input) (json.RawMessage, error) {
		var ts []string
		for _, a := range in {
			ts = append(ts, a.Target)
		}
		return json.Marshal(strings.Join(ts, c.Field))
	}), nil
}

func init() { gather.Register("concat_targets", concatTargets) }

func TestConsolidatorFor(t *testing.T) {
	ins := []gather.Input{in("a", `{"p": 2, "l": [{"k": 1, "s": 1}]}`), in("b", `{"p": 1, "l": [{"k": 1, "s": 5}, {"k": 2, "s": 3}]}`)}
	for _, tc := range []struct {
		cfg     topology.Consolidate
		want    string
		wantErr string
	}{
		{topology.Consolidate{Type: "collect"}, `{"answers":[{"target":"a","task_id":"r/a","value":{"l":[{"k":1,"s":1}],"p":2}},{"target":"b","task_id":"r/b","value":{"l":[{"k":1,"s":5},{"k":2,"s":3}],"p":1}}]}`, ""},
		{topology.Consolidate{Type: "min", Field: "p"}, `{"target":"b","task_id":"r/b","value":1,"answer":{"l":[{"k":1,"s":5},{"k":2,"s":3}],"p":1}}`, ""},
		{topology.Consolidate{Type: "max", Field: "p"}, `{"target":"a","task_id":"r/a","value":2,"answer":{"l":[{"k":1,"s":1}],"p":2}}`, ""},
		{topology.Consolidate{Type: "vote", Field: "l.0.k"}, `{"value":1,"votes":2,"voters":2,"agreement":1,"tally":[{"value":1,"votes":2,"targets":["a","b"]}]}`, ""},
		{topology.Consolidate{Type: "sum", Field: "p"}, `{"sum":3,"count":2}`, ""},
		{topology.Consolidate{Type: "merge", Path: "l", Key: "k", Sort: "s", Order: "desc", Top: 1}, `{"items":[{"k":1,"s":5}],"count":1,"total":2}`, ""},
		{topology.Consolidate{Type: "merge", Path: "l", Key: "k", Sort: "s", Order: "asc"}, `{"items":[{"k":1,"s":1},{"k":2,"s":3}],"count":2,"total":2}`, ""},
		{topology.Consolidate{Type: "concat_targets", Field: "+"}, `"a+b"`, ""},
		{topology.Consolidate{Type: "concat_targets", Field: "!"}, "", "concat_targets: bad separator"},
		{topology.Consolidate{Type: "median", Field: "p"}, "", `gather: unknown consolidation "median": register it with gather.Register`},
		{topology.Consolidate{}, "", `gather: unknown consolidation "": register it with gather.Register`},
	} {
		c, err := gather.ConsolidatorFor(tc.cfg)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%+v: error %v, want %s", tc.cfg, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.cfg, err)
			continue
		}
		got, err := c.Consolidate(ins)
		if err != nil || string(got) != tc.want {
			t.Errorf("%+v:\n got %s (%v)\nwant %s", tc.cfg, got, err, tc.want)
		}
	}
}

// A topology is checked against the registered consolidations when it
// loads: a registered builder's error and an unknown type are problems at
// their paths, as NewFlow would refuse them.
func TestRegisterChecksTopologies(t *testing.T) {
	for _, tc := range []struct{ consolidate, want string }{
		{"{type: concat_targets, field: '+'}", ""},
		{"{type: concat_targets, field: '!'}", "test.yaml:1:67: flows[0].consolidate: concat_targets: bad separator"},
		{"{type: concat_target, field: '+'}", `test.yaml:1:74: flows[0].consolidate.type: unknown consolidation "concat_target" (one of collect, min, max, vote, merge, sum, concat_targets; others are registered in Go with gather.Register)`},
	} {
		doc := "flows: [{name: f, timeout: 1s, targets: [{name: a}], consolidate: " + tc.consolidate + "}]"
		topo, err := topology.Parse("test.yaml", []byte(doc), func(string) (string, bool) { return "", false })
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.consolidate, got, tc.want)
		}
		if err == nil {
			if _, err := gather.NewFlow(topo.Flows[0], nil); err != nil {
				t.Errorf("%s: loaded, but NewFlow refuses it: %v", tc.consolidate, err)
			}
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	for _, name := range []string{"collect", "min", "max", "vote", "merge", "sum", "concat_targets"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", name)
				}
			}()
			gather.Register(name, concatTargets)
		}()
	}
}

// A registered consolidation is usable by name in a topology, end to end.
func TestRegisteredConsolidationInAFold(t *testing.T) {
	h := newHarness(t, flowConfig(t, "{type: all}", "{type: concat_targets, field: ','}"))
	h.manifest(1000, "r1", "all", 0, -1, "a", "b", "c")
	h.ok(1001, "r1", "c", `{}`)
	h.fail(1002, "r1", "b", "down")
	h.ok(1003, "r1", "a", `[]`)
	agg := h.only()
	if string(agg.Result) != `"a,c"` || agg.Consolidation != "concat_targets" || agg.Outcome != schemas.OutcomeComplete {
		t.Errorf("result %s consolidation %s outcome %s", agg.Result, agg.Consolidation, agg.Outcome)
	}
}

func ExampleConsolidatorFunc() {
	// Count the OK answers per target.
	count := gather.ConsolidatorFunc(func(in []gather.Input) (json.RawMessage, error) {
		n := map[string]int{}
		for _, a := range in {
			n[a.Target]++
		}
		return json.Marshal(n)
	})
	// The Func's Check accepts any JSON.
	fmt.Println(count.Check([]byte(`{"ok": true}`)) == nil, count.Check([]byte(`oops`)) != nil)
	out, err := count.Consolidate([]gather.Input{
		{TaskID: "r1/a/0", Target: "a", Item: 0, Payload: []byte(`{}`)},
		{TaskID: "r1/a/1", Target: "a", Item: 1, Payload: []byte(`{}`)},
		{TaskID: "r1/b/0", Target: "b", Item: 0, Payload: []byte(`{}`)},
	})
	fmt.Println(string(out), err)
	// Output:
	// true true
	// {"a":2,"b":1} <nil>
}

func ExampleMinBy() {
	cheapest := gather.MinBy("offer.price")
	out, _ := cheapest.Consolidate([]gather.Input{
		{TaskID: "r1/kayak", Target: "kayak", Item: -1, Payload: []byte(`{"offer": {"price": 120.50}}`)},
		{TaskID: "r1/expedia", Target: "expedia", Item: -1, Payload: []byte(`{"offer": {"price": 99.90}}`)},
	})
	fmt.Println(string(out))
	// Output:
	// {"target":"expedia","task_id":"r1/expedia","value":99.90,"answer":{"offer":{"price":99.90}}}
}

func ExampleSum() {
	total := gather.Sum("price")
	out, _ := total.Consolidate([]gather.Input{
		{TaskID: "r1/a", Target: "a", Item: -1, Payload: []byte(`{"price": 0.1}`)},
		{TaskID: "r1/b", Target: "b", Item: -1, Payload: []byte(`{"price": 0.20}`)},
	})
	fmt.Println(string(out))
	// Output:
	// {"sum":0.3,"count":2}
}

// FuzzNumbers: numeric consolidations never panic on any pair of JSON
// numbers, write valid JSON, and do not depend on the order of the answers
// beyond ties (min <= max, a+b == b+a).
func FuzzNumbers(f *testing.F) {
	for _, p := range [][2]string{{"1", "1.0"}, {"9007199254740993", "9007199254740992"}, {"1e308", "1e308"},
		{"0.1", "0.2"}, {"-0", "0e-5"}, {"1e100000", "9e100000"}, {"1e1000", "1"}, {"1e-100001", "2"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !json.Valid([]byte(a)) || !json.Valid([]byte(b)) {
			return
		}
		ab := []gather.Input{in("a", `{"n": `+a+`}`), in("b", `{"n": `+b+`}`)}
		ba := []gather.Input{in("a", `{"n": `+b+`}`), in("b", `{"n": `+a+`}`)}
		for _, c := range []gather.Consolidator{gather.MinBy("n"), gather.MaxBy("n"), gather.Vote("n"), gather.Sum("n"), gather.Merge("n", "", "", false, 0)} {
			if out, err := c.Consolidate(ab); err == nil && !json.Valid(out) {
				t.Fatalf("invalid JSON %s", out)
			}
		}
		s1, err1 := gather.Sum("n").Consolidate(ab)
		s2, err2 := gather.Sum("n").Consolidate(ba)
		if (err1 == nil) != (err2 == nil) || string(s1) != string(s2) {
			t.Fatalf("a+b = %s (%v), b+a = %s (%v)", s1, err1, s2, err2)
		}
		lo, err1 := gather.MinBy("n").Consolidate(ab)
		hi, err2 := gather.MaxBy("n").Consolidate(ab)
		if err1 == nil && err2 == nil {
			var l, h struct{ Target string }
			_ = json.Unmarshal(lo, &l)
			_ = json.Unmarshal(hi, &h)
			// Equal values: both pick a. Otherwise they pick different targets.
			if l.Target == h.Target && l.Target != "a" {
				t.Fatalf("min %s and max %s", lo, hi)
			}
		}
	})
}
