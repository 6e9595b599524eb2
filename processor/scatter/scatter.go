// Package scatter turns a request into its manifest and tasks, as the
// topology of its flow says: one task per target with the whole payload
// (fanout mode targets), or one task per item of a JSON array in the
// payload and per target (mode items), bounded by fanout.max_tasks.
//
// Planning is pure: the Kafka glue reads the request, calls Plan, and writes
// the manifest to the results partition the plan names and the tasks to
// their topics, with the consumed offset, in one transaction.
package scatter

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/scattergather/scattergather/processor/payload"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// RejectError says why a request cannot be scattered; the request goes to
// the dead-letter topic with Reason.
type RejectError struct {
	Kind   string // one of the schemas.Kind constants, for schemas.HeaderReasonKind
	Reason string
}

func (e *RejectError) Error() string { return "scatter: " + e.Reason }

func reject(kind, format string, args ...any) error {
	return &RejectError{Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// IsReject reports whether err is a *RejectError.
func IsReject(err error) bool {
	var r *RejectError
	return errors.As(err, &r)
}

// Task is one planned task and the topic it goes to.
type Task struct {
	Topic string
	Task  *schemas.Task
}

// Plan is what one request becomes.
type Plan struct {
	// ResultsPartition is the partition of the results topic that receives
	// the manifest and, from the workers, every result.
	ResultsPartition int32
	Manifest         *schemas.Manifest
	Tasks            []Task
}

// Planner plans the requests of one flow. It is safe for concurrent use.
type Planner struct {
	flow       *topology.Flow
	partitions int32
	codec      *schemas.Codec
}

// NewPlanner returns a planner for flow whose results topic has
// resultsPartitions partitions. It refuses a flow whose timeout is not
// positive or exceeds limits.max_timeout (which validation prevents): the
// gather would dead-letter every manifest.
func NewPlanner(flow *topology.Flow, resultsPartitions int32, codec *schemas.Codec) (*Planner, error) {
	if resultsPartitions < 1 {
		return nil, fmt.Errorf("scatter: results topic %s has %d partitions", flow.Topics.Results, resultsPartitions)
	}
	if t := flow.Timeout.D; t.Milliseconds() <= 0 || t > flow.Limits.MaxTimeout.D {
		return nil, fmt.Errorf("scatter: flow %s: timeout %s is not within 1ms and limits.max_timeout %s", flow.Name, t, flow.Limits.MaxTimeout.D)
	}
	if codec == nil {
		codec = schemas.Default
	}
	return &Planner{flow: flow, partitions: resultsPartitions, codec: codec}, nil
}

// Decode reads a request record; an undecodable record is a *RejectError.
func (p *Planner) Decode(value []byte) (*schemas.Request, error) {
	var req schemas.Request
	if err := p.codec.DecodeInto(value, &req); err != nil {
		if errors.Is(err, schemas.ErrRegistryUnavailable) {
			return nil, err // not the record's fault: it waits for the registry
		}
		return nil, reject(schemas.KindUndecodable, "undecodable request: %v", err)
	}
	return &req, nil
}

// Plan plans request req, read at partition and offset of the requests
// topic, at wall-clock time nowMs. nowMs only sets the tasks' deadline
// (nowMs + timeout + worker.deadline_grace), after which a worker no longer
// calls the provider; whether an answer counts is decided by the gather:
// the manifest's log time plus the timeout. It returns a *RejectError for a
// request that must be dead-lettered.
func (p *Planner) Plan(req *schemas.Request, partition int32, offset, nowMs int64) (*Plan, error) {
	f := p.flow
	if req.RequestID == "" {
		return nil, reject(schemas.KindMissingRequestID, "missing request id")
	}
	if err := schemas.ValidRequestID(req.RequestID); err != nil {
		return nil, reject(schemas.KindInvalidRequestID, "%s", strings.TrimPrefix(err.Error(), "schemas: "))
	}
	switch {
	case req.Flow != f.Name:
		return nil, reject(schemas.KindUnknownFlow, "unknown flow %q: this is flow %q's request topic", req.Flow, f.Name)
	case len(req.Payload) > int(f.Limits.MaxPayloadBytes):
		return nil, reject(schemas.KindOversize, "payload of %d bytes exceeds limits.max_payload_bytes %d", len(req.Payload), f.Limits.MaxPayloadBytes)
	}

	type work struct {
		item    int32
		payload []byte
	}
	units := []work{{item: schemas.NoItem, payload: req.Payload}}
	if f.Fanout.Mode == topology.FanoutItems {
		doc, err := payload.Parse(req.Payload)
		if err != nil {
			return nil, reject(schemas.KindFanout, "items fan-out: %v", err)
		}
		items, err := payload.Array(doc, f.Fanout.Items)
		if err != nil {
			return nil, reject(schemas.KindFanout, "items fan-out: %v", err)
		}
		if len(items) == 0 {
			return nil, reject(schemas.KindFanout, "items fan-out: %s is empty: no task to run", f.Fanout.Items)
		}
		if n := len(items) * len(f.Targets); n > f.Fanout.MaxTasks {
			return nil, reject(schemas.KindFanout, "fan-out of %d tasks exceeds fanout.max_tasks %d", n, f.Fanout.MaxTasks)
		}
		units = units[:0]
		for i, it := range items {
			b, err := payload.Marshal(it)
			if err != nil {
				return nil, reject(schemas.KindFanout, "items fan-out: item %d: %v", i, err)
			}
			units = append(units, work{item: int32(i), payload: b})
		}
	}

	rp := Partition(req.RequestID, p.partitions)
	attrs := req.Attributes.Normalize()
	ct := req.ContentType
	if ct == "" {
		ct = schemas.ContentTypeJSON
	}
	plan := &Plan{ResultsPartition: rp}
	m := &schemas.Manifest{
		RequestID:        req.RequestID,
		Flow:             f.Name,
		Strategy:         f.Strategy.Type,
		MaxFailures:      int32(f.Strategy.MaxFailuresOrNone()),
		TimeoutMs:        f.Timeout.D.Milliseconds(),
		RequestPartition: partition,
		RequestOffset:    offset,
		Attributes:       attrs,
	}
	deadline := addSat(addSat(nowMs, m.TimeoutMs), f.Worker.DeadlineGrace.D.Milliseconds())
	for _, u := range units {
		for _, t := range f.Targets {
			id := req.RequestID + "/" + t.Name
			if u.item != schemas.NoItem {
				id += "/" + strconv.Itoa(int(u.item))
			}
			m.Tasks = append(m.Tasks, schemas.TaskRef{TaskID: id, Target: t.Name, Item: u.item})
			plan.Tasks = append(plan.Tasks, Task{Topic: t.Topic, Task: &schemas.Task{
				RequestID:        req.RequestID,
				Flow:             f.Name,
				TaskID:           id,
				Target:           t.Name,
				Item:             u.item,
				Payload:          u.payload,
				ContentType:      ct,
				ResultsPartition: rp,
				DeadlineMs:       deadline,
				Attributes:       attrs,
			}})
		}
	}
	if f.Strategy.Type == topology.StrategyQuorum {
		m.Quorum = int32(f.Strategy.QuorumFor(len(m.Tasks)))
	}
	plan.Manifest = m
	return plan, nil
}

// addSat returns a+b for b >= 0, or the largest int64 when the sum
// overflows: a deadline far away, never one in the past.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Partition returns the partition of n that Kafka's default partitioner
// gives key: murmur2 of the key, made positive, modulo n. Results of a
// request are keyed by its id, so they land where a keyed producer would
// put them.
func Partition(key string, n int32) int32 {
	return (murmur2([]byte(key)) & 0x7fffffff) % n
}

// murmur2 is Kafka's Utils.murmur2.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}
