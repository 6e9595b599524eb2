package schemas

// MaxRequestIDBytes is the longest request id, in bytes. The scatter
// dead-letters a request with a longer id, and the gather refuses manifests
// and results that carry one: it is the longest key the gather's state
// stores. ValidRequestID gives the other rules of a request id.
const MaxRequestIDBytes = 1024

// Headers of the records written to the dead-letter topic (<flow>.dlq) and
// the late topic (<flow>.late). Both carry all of them; the record's key
// and value are the original record's, byte for byte, unless the record
// would not fit the topic: then the value (and, if still too large, the
// key) is cut, and HeaderOriginalSize and HeaderOriginalSHA256 describe
// the original value. Header values are UTF-8 text.
const (
	// HeaderReason is why the record was set aside, for people: a sentence
	// that may change between versions.
	HeaderReason = "sg-reason"
	// HeaderReasonKind is the kind of reason, for programs and metrics: one
	// of the Kind constants, a short word that does not change.
	HeaderReasonKind = "sg-reason-kind"
	// HeaderStage is the stage that set the record aside: one of the Stage
	// constants.
	HeaderStage = "sg-stage"
	// HeaderFlow is the name of the flow.
	HeaderFlow = "sg-flow"
	// HeaderTopic is the topic the original record was read from.
	HeaderTopic = "sg-source-topic"
	// HeaderPartition is the partition of the original record, in decimal.
	HeaderPartition = "sg-source-partition"
	// HeaderOffset is the offset of the original record, in decimal.
	HeaderOffset = "sg-source-offset"
	// HeaderOriginalSize is the size in bytes of the original value, in
	// decimal, on a record whose value was cut to fit its topic; absent
	// when the value is whole.
	HeaderOriginalSize = "sg-original-size"
	// HeaderOriginalSHA256 is the SHA-256 digest of the original value, in
	// lowercase hex, on a record whose value was cut to fit its topic.
	HeaderOriginalSHA256 = "sg-original-sha256"
)

// Stages, the values of HeaderStage.
const (
	StageScatter = "scatter"
	StageWorker  = "worker"
	StageGather  = "gather"
)

// Kinds of reason, the values of HeaderReasonKind (and of the kind label of
// the dead-letter metrics). A kind names the rule a record broke; the
// stages that use it are given in brackets.
const (
	// KindUndecodable: not Avro single-object encoding, or a schema
	// fingerprint the reader does not know [scatter, worker, gather].
	KindUndecodable = "undecodable"
	// KindUnknownFlow: the record names another flow than the topic's
	// [scatter, worker, gather].
	KindUnknownFlow = "unknown_flow"
	// KindMissingRequestID: a request without a request id [scatter].
	KindMissingRequestID = "missing_request_id"
	// KindInvalidRequestID: a request id that ValidRequestID refuses:
	// longer than MaxRequestIDBytes, not valid UTF-8, with a control
	// character or white space at either end [scatter].
	KindInvalidRequestID = "invalid_request_id"
	// KindOversize: a payload larger than the flow's
	// limits.max_payload_bytes [scatter].
	KindOversize = "oversize"
	// KindFanout: the payload cannot be fanned out over items as the flow
	// says, or into more tasks than fanout.max_tasks [scatter].
	KindFanout = "fanout"
	// KindBrokerRefused: the broker or the producer refuses the records a
	// request or a task becomes (too large, or another refusal of the
	// record) [scatter, worker].
	KindBrokerRefused = "broker_refused"
	// KindEncode: the records a request or task becomes cannot be encoded
	// [scatter, worker].
	KindEncode = "encode"
	// KindInternal: an unexpected failure while processing the record
	// [scatter].
	KindInternal = "internal"
	// KindWrongTarget: a task of the flow, with ids and a results
	// partition of the flow, for another target than its topic's. It is
	// answered with an ERROR result, not dead-lettered; the kind labels
	// the worker's count of refused tasks [worker].
	KindWrongTarget = "wrong_target"
	// KindInvalidTask: a task without request id or task id, or naming a
	// results partition that does not exist [worker].
	KindInvalidTask = "invalid_task"
	// KindUnexpectedRecord: a record of a kind that does not belong in the
	// results topic (a request, a task, an aggregate) [gather].
	KindUnexpectedRecord = "unexpected_record"
	// KindInvalidManifest: a manifest that breaks its rules (a request id
	// ValidRequestID refuses, no tasks, a task id twice, a bad strategy, a
	// timeout_ms not positive, above the flow's limits.max_timeout, or
	// whose deadline overflows) [gather].
	KindInvalidManifest = "invalid_manifest"
	// KindInvalidResult: a result without a valid request id, or for a
	// task its request does not have [gather].
	KindInvalidResult = "invalid_result"
)

// Kinds of reason of late records, in <flow>.late.
const (
	// KindCompletedRequest: a result of a request that has already
	// completed (by its strategy or its deadline) [gather].
	KindCompletedRequest = "completed_request"
	// KindUnknownRequest: a result of a request the gather does not know:
	// never opened, or forgotten after gather.closed_retention [gather].
	KindUnknownRequest = "unknown_request"
)
