package worker

import (
	"errors"
	"fmt"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// RejectError says why a task record cannot be run. A record that cannot
// be answered goes to the dead-letter topic with Reason; one that can (Task
// set) is answered with the ERROR result of Answer instead.
type RejectError struct {
	Kind   string // one of the schemas.Kind constants, for schemas.HeaderReasonKind
	Reason string
	// Task is the decoded task when it can be answered although it must
	// not run: it names this topic's flow, a request id, a task id and a
	// results partition of the flow, but a target this topic does not
	// serve. Its ERROR result makes the gather report the target failed,
	// with Reason, rather than missing at the deadline. Nil for a record
	// that can only be dead-lettered.
	Task *schemas.Task
}

func (e *RejectError) Error() string { return "worker: " + e.Reason }

// Answer returns the ERROR result that answers e.Task, as written by
// worker, or nil when the record cannot be answered.
func (e *RejectError) Answer(worker string) *schemas.Result {
	t := e.Task
	if t == nil {
		return nil
	}
	return &schemas.Result{
		RequestID:   t.RequestID,
		Flow:        t.Flow,
		TaskID:      t.TaskID,
		Target:      t.Target,
		Item:        t.Item,
		Status:      schemas.StatusError,
		Payload:     []byte{},
		ContentType: schemas.ContentTypeJSON,
		Error:       e.Error(),
		Worker:      worker,
	}
}

func reject(kind, format string, args ...any) error {
	return &RejectError{Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// IsReject reports whether err is a *RejectError.
func IsReject(err error) bool {
	var r *RejectError
	return errors.As(err, &r)
}

// Decoder reads the task records of one target of a flow. It is safe for
// concurrent use.
type Decoder struct {
	flow   *topology.Flow
	target string
	codec  *schemas.Codec
}

// NewDecoder returns the decoder of the task topic of target of flow. A nil
// codec is schemas.Default.
func NewDecoder(flow *topology.Flow, target string, codec *schemas.Codec) *Decoder {
	if codec == nil {
		codec = schemas.Default
	}
	return &Decoder{flow: flow, target: target, codec: codec}
}

// Decode reads a task record. A task that must not run is a *RejectError:
// undecodable, of another flow, without ids or naming a results partition
// the flow does not have (dead-lettered: there is no answer to give it, or
// none that its flow's gather would read), or for a target this topic does
// not serve (answered, RejectError.Task set). The returned task is the
// caller's.
func (d *Decoder) Decode(value []byte) (*schemas.Task, error) {
	var task schemas.Task
	if err := d.codec.DecodeInto(value, &task); err != nil {
		if errors.Is(err, schemas.ErrRegistryUnavailable) {
			return nil, err // not the record's fault: it waits for the registry
		}
		return nil, reject(schemas.KindUndecodable, "undecodable task: %v", err)
	}
	f := d.flow
	switch {
	case task.Flow != f.Name:
		return nil, reject(schemas.KindUnknownFlow, "task of flow %q in a task topic of flow %q", task.Flow, f.Name)
	case task.RequestID == "" || task.TaskID == "":
		return nil, reject(schemas.KindInvalidTask, "task without request id or task id")
	case task.ResultsPartition < 0 || int(task.ResultsPartition) >= f.Partitions:
		return nil, reject(schemas.KindInvalidTask, "task names results partition %d of %d", task.ResultsPartition, f.Partitions)
	case task.Target != d.target:
		return nil, &RejectError{Kind: schemas.KindWrongTarget, Task: &task,
			Reason: fmt.Sprintf("task for target %q, which this worker does not serve here (topic of target %q)", task.Target, d.target)}
	}
	return &task, nil
}
