package worker

import (
	"errors"
	"fmt"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// RejectError says why a task record cannot be run; it goes to the
// dead-letter topic with Reason.
type RejectError struct {
	Kind   string // one of the schemas.Kind constants, for schemas.HeaderReasonKind
	Reason string
}

func (e *RejectError) Error() string { return "worker: " + e.Reason }

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

// Decode reads a task record. A task that must not run (undecodable, of
// another flow or target, without ids, or naming a results partition the
// flow does not have) is a *RejectError. The returned task is the caller's.
func (d *Decoder) Decode(value []byte) (*schemas.Task, error) {
	var task schemas.Task
	if err := d.codec.DecodeInto(value, &task); err != nil {
		return nil, reject(schemas.KindUndecodable, "undecodable task: %v", err)
	}
	f := d.flow
	switch {
	case task.Flow != f.Name:
		return nil, reject(schemas.KindUnknownFlow, "task of flow %q in a task topic of flow %q", task.Flow, f.Name)
	case task.Target != d.target:
		return nil, reject(schemas.KindWrongTarget, "task for target %q, which this worker does not serve here (topic of target %q)", task.Target, d.target)
	case task.RequestID == "" || task.TaskID == "":
		return nil, reject(schemas.KindInvalidTask, "task without request id or task id")
	case task.ResultsPartition < 0 || int(task.ResultsPartition) >= f.Partitions:
		return nil, reject(schemas.KindInvalidTask, "task names results partition %d of %d", task.ResultsPartition, f.Partitions)
	}
	return &task, nil
}
