package schemas

import (
	"encoding/json"
	"slices"
	"strings"
)

// Status is the outcome of one task as a worker reports it.
type Status string

// Task statuses.
const (
	StatusOK    Status = "OK"
	StatusError Status = "ERROR"
)

// Outcome is the rule that completed a request.
type Outcome string

// Outcomes, as the aggregate schema enumerates them.
const (
	// OutcomeComplete: every task answered (OK or ERROR) before the deadline.
	OutcomeComplete Outcome = "complete"
	// OutcomeFirst: the first OK answer completed a first-strategy request.
	OutcomeFirst Outcome = "first"
	// OutcomeQuorum: enough OK answers completed a quorum-strategy request.
	OutcomeQuorum Outcome = "quorum"
	// OutcomeDeadline: the deadline ended a timeout-strategy request, its normal end.
	OutcomeDeadline Outcome = "deadline"
	// OutcomeTimeout: the deadline passed before the strategy was satisfied.
	OutcomeTimeout Outcome = "timeout"
	// OutcomeFailed: too many failures, no possible success, or a consolidation
	// that could not be built.
	OutcomeFailed Outcome = "failed"
)

// ContentTypeJSON is the default content type of payloads.
const ContentTypeJSON = "application/json"

// NoItem is the item index of a task of a static fan-out.
const NoItem = -1

// Request is a request to scatter (request.avsc).
type Request struct {
	RequestID   string     `avro:"request_id" json:"request_id"`
	Flow        string     `avro:"flow" json:"flow"`
	Payload     []byte     `avro:"payload" json:"payload"`
	ContentType string     `avro:"content_type" json:"content_type"`
	Attributes  Attributes `avro:"attributes" json:"attributes"`
}

// Task is one unit of work for one target (task.avsc).
type Task struct {
	RequestID        string     `avro:"request_id" json:"request_id"`
	Flow             string     `avro:"flow" json:"flow"`
	TaskID           string     `avro:"task_id" json:"task_id"`
	Target           string     `avro:"target" json:"target"`
	Item             int32      `avro:"item" json:"item"`
	Payload          []byte     `avro:"payload" json:"payload"`
	ContentType      string     `avro:"content_type" json:"content_type"`
	ResultsPartition int32      `avro:"results_partition" json:"results_partition"`
	DeadlineMs       int64      `avro:"deadline_ms" json:"deadline_ms"`
	Attributes       Attributes `avro:"attributes" json:"attributes"`
}

// TaskRef names one expected task of a request (manifest.avsc).
type TaskRef struct {
	TaskID string `avro:"task_id" json:"task_id"`
	Target string `avro:"target" json:"target"`
	Item   int32  `avro:"item" json:"item"`
}

// Manifest opens a request in the gather (manifest.avsc).
type Manifest struct {
	RequestID        string     `avro:"request_id" json:"request_id"`
	Flow             string     `avro:"flow" json:"flow"`
	Tasks            []TaskRef  `avro:"tasks" json:"tasks"`
	Strategy         string     `avro:"strategy" json:"strategy"`
	Quorum           int32      `avro:"quorum" json:"quorum"`
	MaxFailures      int32      `avro:"max_failures" json:"max_failures"`
	TimeoutMs        int64      `avro:"timeout_ms" json:"timeout_ms"`
	RequestPartition int32      `avro:"request_partition" json:"request_partition"`
	RequestOffset    int64      `avro:"request_offset" json:"request_offset"`
	Attributes       Attributes `avro:"attributes" json:"attributes"`
}

// Result is the answer to one task (result.avsc).
type Result struct {
	RequestID   string `avro:"request_id" json:"request_id"`
	Flow        string `avro:"flow" json:"flow"`
	TaskID      string `avro:"task_id" json:"task_id"`
	Target      string `avro:"target" json:"target"`
	Item        int32  `avro:"item" json:"item"`
	Status      Status `avro:"status" json:"status"`
	Payload     []byte `avro:"payload" json:"payload"`
	ContentType string `avro:"content_type" json:"content_type"`
	Error       string `avro:"error" json:"error"`
	Attempts    int32  `avro:"attempts" json:"attempts"`
	DurationMs  int64  `avro:"duration_ms" json:"duration_ms"`
	Worker      string `avro:"worker" json:"worker"`
}

// Tick is the gather's clock record (tick.avsc).
type Tick struct {
	SentMs int64 `avro:"sent_ms" json:"sent_ms"`
}

// Answer is one task's answer as the aggregate reports it.
type Answer struct {
	TaskID     string `avro:"task_id" json:"task_id"`
	Target     string `avro:"target" json:"target"`
	Item       int32  `avro:"item" json:"item"`
	Error      string `avro:"error" json:"error"`
	LatencyMs  int64  `avro:"latency_ms" json:"latency_ms"`
	Attempts   int32  `avro:"attempts" json:"attempts"`
	DurationMs int64  `avro:"duration_ms" json:"duration_ms"`
}

// Aggregate is the consolidated answer to one request (aggregate.avsc).
type Aggregate struct {
	RequestID      string     `avro:"request_id" json:"request_id"`
	Flow           string     `avro:"flow" json:"flow"`
	Outcome        Outcome    `avro:"outcome" json:"outcome"`
	Reason         string     `avro:"reason" json:"reason"`
	Strategy       string     `avro:"strategy" json:"strategy"`
	Consolidation  string     `avro:"consolidation" json:"consolidation"`
	Result         []byte     `avro:"result" json:"result"`
	ContentType    string     `avro:"content_type" json:"content_type"`
	Tasks          int32      `avro:"tasks" json:"tasks"`
	Answered       []Answer   `avro:"answered" json:"answered"`
	Failed         []Answer   `avro:"failed" json:"failed"`
	Missing        []TaskRef  `avro:"missing" json:"missing"`
	Duplicates     int32      `avro:"duplicates" json:"duplicates"`
	OpenedMs       int64      `avro:"opened_ms" json:"opened_ms"`
	DeadlineMs     int64      `avro:"deadline_ms" json:"deadline_ms"`
	CompletedMs    int64      `avro:"completed_ms" json:"completed_ms"`
	Partition      int32      `avro:"partition" json:"partition"`
	ManifestOffset int64      `avro:"manifest_offset" json:"manifest_offset"`
	Attributes     Attributes `avro:"attributes" json:"attributes"`
}

// MarshalJSON writes the aggregate as JSON with its result inline (not as
// base64), for people and tools that read aggregates as JSON lines.
func (a *Aggregate) MarshalJSON() ([]byte, error) {
	type plain Aggregate
	result := json.RawMessage(a.Result)
	if !json.Valid(result) {
		result = json.RawMessage("null")
	}
	return json.Marshal(struct {
		*plain
		Result json.RawMessage `json:"result"`
	}{(*plain)(a), result})
}

// Attribute is one string attribute of a request.
type Attribute struct {
	Key   string `avro:"key" json:"key"`
	Value string `avro:"value" json:"value"`
}

// Attributes are a request's string attributes, copied to its tasks,
// manifest and aggregate. On the wire they are an array sorted by key with
// unique keys (not an Avro map, whose encoding order is unspecified), so
// that an aggregate's bytes are a function of the log alone. In JSON they
// are an object.
type Attributes []Attribute

// AttributesOf returns m as sorted Attributes.
func AttributesOf(m map[string]string) Attributes {
	out := make(Attributes, 0, len(m))
	for k, v := range m {
		out = append(out, Attribute{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b Attribute) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Normalize returns a sorted, de-duplicated copy of a (the last value of a
// repeated key wins), never nil.
func (a Attributes) Normalize() Attributes {
	m := make(map[string]string, len(a))
	for _, kv := range a {
		m[kv.Key] = kv.Value
	}
	return AttributesOf(m)
}

// Get returns the value of key.
func (a Attributes) Get(key string) (string, bool) {
	for _, kv := range a {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// Map returns the attributes as a map.
func (a Attributes) Map() map[string]string {
	m := make(map[string]string, len(a))
	for _, kv := range a {
		m[kv.Key] = kv.Value
	}
	return m
}

// MarshalJSON writes the attributes as a JSON object.
func (a Attributes) MarshalJSON() ([]byte, error) { return json.Marshal(a.Map()) }

// UnmarshalJSON reads a JSON object.
func (a *Attributes) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*a = AttributesOf(m)
	return nil
}
