package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

func testWriter(limits map[string]int) *writer {
	f := &topology.Flow{Name: "f"}
	f.Topics.DeadLetter, f.Topics.Aggregated = "f.dlq", "f.aggregated"
	return &writer{flow: f, role: RoleGather, log: slog.New(slog.NewTextHandler(io.Discard, nil)), limits: limits}
}

// A re-read of the topics' limits that fails keeps the limits read
// before, rather than the producer's batch limit, which would let records
// over a topic's limit pass the check again; a topic never read gets the
// batch limit.
func TestReadLimitsKeepsTheKnownLimitWhenTheReadFails(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w := testWriter(map[string]int{"f.results": 50_000})
	w.cl, w.adm = cl, kadm.NewClient(cl)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the read fails
	w.readLimits(ctx, "f.results", "f.new")
	if got := w.limit("f.results"); got != 50_000 {
		t.Errorf("f.results: limit %d after a failed read, want the 50000 read before", got)
	}
	if got, want := w.limit("f.new"), w.batchLimit("f.new"); got != want {
		t.Errorf("f.new: limit %d, want the batch limit %d", got, want)
	}
}

func TestClassifyWrite(t *testing.T) {
	for _, c := range []struct {
		err  error
		want refusal
	}{
		{nil, notRefused},
		{fmt.Errorf("%w (uncompressed_bytes=1000123)", kerr.MessageTooLarge), refusedSize},
		{kerr.RecordListTooLarge, refusedSize},
		{kerr.TopicAuthorizationFailed, refusedTopic},
		{kerr.UnknownTopicOrPartition, refusedTopic},
		{kerr.ClusterAuthorizationFailed, refusedTopic},
		{kerr.PolicyViolation, refusedRecord},
		{kerr.InvalidRecord, refusedRecord},
		{kerr.RequestTimedOut, notRefused},
		{kerr.NotLeaderForPartition, notRefused},
		{context.DeadlineExceeded, notRefused},
		{kgo.ErrAborting, notRefused},
	} {
		if got := classifyWrite(c.err); got != c.want {
			t.Errorf("classifyWrite(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// A denied topic stops the role at once, with one permanent error that
// names the topic and the fix.
func TestAbortedOnDeniedTopicStops(t *testing.T) {
	w := testWriter(nil)
	rec := &kgo.Record{Topic: "f.dlq"}
	_, err := w.aborted(context.Background(), "f.results/0@7", []failedWrite{
		{&kgo.Record{Topic: "f.aggregated"}, kgo.ErrAborting},
		{rec, kerr.TopicAuthorizationFailed},
	})
	const want = "kafka: flow f: cannot write to topic f.dlq: TOPIC_AUTHORIZATION_FAILED: grant WRITE on it to this principal"
	if err == nil || err.Error() != want {
		t.Fatalf("aborted: %v, want %q", err, want)
	}
	if !IsPermanent(err) || !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("%v: permanent %v, is TopicAuthorizationFailed %v; want both", err, IsPermanent(err), errors.Is(err, kerr.TopicAuthorizationFailed))
	}
	var we *WriteError
	if !errors.As(err, &we) || we.Topic != "f.dlq" {
		t.Errorf("%v is not a *WriteError for f.dlq", err)
	}
}

// The same records refused for the same cause stop the role at the
// maxAborts-th abort in a row; another poll, another cause or a commit
// starts the count again; failures that are no refusal do not count.
func TestAbortedInARowIsBounded(t *testing.T) {
	ctx := context.Background()
	w := testWriter(nil)
	refused := []failedWrite{{&kgo.Record{Topic: "f.aggregated"}, kerr.PolicyViolation}}
	for i := 1; i < maxAborts; i++ {
		if _, err := w.aborted(ctx, "p@1", refused); err != nil {
			t.Fatalf("abort %d: %v, want to retry", i, err)
		}
	}
	if cause, err := w.aborted(ctx, "p@1", []failedWrite{{&kgo.Record{Topic: "f.aggregated"}, kgo.ErrAborting}}); cause != nil || err != nil {
		t.Fatalf("an abort without refusal: cause %v, err %v; want neither", cause, err)
	}
	_, err := w.aborted(ctx, "p@1", refused)
	if err == nil || !IsPermanent(err) || !errors.Is(err, kerr.PolicyViolation) || !strings.Contains(err.Error(), "POLICY_VIOLATION") {
		t.Fatalf("abort %d in a row: %v, want a permanent error with the cause", maxAborts, err)
	}

	w = testWriter(nil)
	for i := range 3 * maxAborts {
		poll := "p@1"
		switch {
		case i%maxAborts == maxAborts-1:
			poll = "p@2" // the records moved on
		case i%maxAborts == maxAborts-2:
			w.committed()
		}
		if _, err := w.aborted(ctx, poll, refused); err != nil {
			t.Fatalf("abort %d: %v, want the count started again", i, err)
		}
	}
}

func TestTruncate(t *testing.T) {
	value := bytes.Repeat([]byte("v"), 10_000)
	sum := sha256.Sum256(value)
	rec := deadLetter(&topology.Flow{Name: "f"}, schemas.StageGather, &kgo.Record{Topic: "f.results", Key: []byte("k"), Value: value}, schemas.KindUndecodable, "undecodable")
	rec.Topic = "f.dlq"

	if got, cut := truncate(rec, recordBytes(rec)); cut || got != rec {
		t.Errorf("a record that fits was cut")
	}
	const limit = 5000
	got, cut := truncate(rec, limit)
	if !cut || recordBytes(got) > limit || recordBytes(got) < limit-8 {
		t.Fatalf("cut %v to %d bytes, want just under %d", cut, recordBytes(got), limit)
	}
	if !bytes.HasPrefix(value, got.Value) || string(got.Key) != "k" {
		t.Errorf("cut record: key %q, value not a prefix of the original", got.Key)
	}
	if Header(got, schemas.HeaderOriginalSize) != strconv.Itoa(len(value)) || Header(got, schemas.HeaderOriginalSHA256) != hex.EncodeToString(sum[:]) {
		t.Errorf("cut record: size %q digest %q", Header(got, schemas.HeaderOriginalSize), Header(got, schemas.HeaderOriginalSHA256))
	}
	if Header(got, schemas.HeaderReasonKind) != schemas.KindUndecodable || len(rec.Headers) != len(got.Headers)-2 || len(rec.Value) != len(value) {
		t.Errorf("the original record changed, or the cut one lost its headers")
	}

	// A key too large too is cut after the value.
	rec.Key = bytes.Repeat([]byte("k"), 8000)
	got, _ = truncate(rec, limit)
	if len(got.Value) != 0 || len(got.Key) == 0 || recordBytes(got) > limit {
		t.Errorf("key %d bytes, value %d bytes, %d in all: want the value gone and the key cut to %d", len(got.Key), len(got.Value), recordBytes(got), limit)
	}
}

func TestFitAggregate(t *testing.T) {
	w := testWriter(map[string]int{"f.aggregated": 1500})
	agg := &schemas.Aggregate{RequestID: "r", Flow: "f", Outcome: schemas.OutcomeComplete, Result: []byte(`"` + strings.Repeat("x", 2000) + `"`),
		Answered: []schemas.Answer{}, Failed: []schemas.Answer{}, Missing: []schemas.TaskRef{}}
	encode := func(a *schemas.Aggregate) *kgo.Record {
		b, err := schemas.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: "f.aggregated", Key: []byte(a.RequestID), Value: b}
	}
	small := *agg
	small.Result = []byte("1")
	if rec, a, rewritten := w.fitAggregate(encode(&small), &small, schemas.Default); rewritten || a != &small || rec.Topic != "f.aggregated" {
		t.Errorf("an aggregate that fits was rewritten")
	}

	rec, a, rewritten := w.fitAggregate(encode(agg), agg, schemas.Default)
	if !rewritten || a.Outcome != schemas.OutcomeFailed || string(a.Result) != "null" || !strings.Contains(a.Reason, "exceeds what topic f.aggregated accepts") {
		t.Fatalf("rewritten %v: %s %q, result of %d bytes", rewritten, a.Outcome, a.Reason, len(a.Result))
	}
	if recordBytes(rec) > 1500 || agg.Outcome != schemas.OutcomeComplete {
		t.Errorf("record of %d bytes, or the fold's aggregate changed", recordBytes(rec))
	}
	var back schemas.Aggregate
	if err := schemas.DecodeInto(rec.Value, &back); err != nil || back.Outcome != schemas.OutcomeFailed {
		t.Errorf("written aggregate: %v %s", err, back.Outcome)
	}

	// Task lists too large go too.
	many := *agg
	for i := range 100 {
		many.Failed = append(many.Failed, schemas.Answer{TaskID: fmt.Sprintf("r/t%d", i), Target: "t", Item: -1, Error: strings.Repeat("e", 50)})
	}
	rec, a, _ = w.fitAggregate(encode(&many), &many, schemas.Default)
	if recordBytes(rec) > 1500 || len(a.Failed) != 0 || !strings.Contains(a.Reason, "task lists and attributes dropped") {
		t.Errorf("record of %d bytes, %d failed tasks kept, reason %q", recordBytes(rec), len(a.Failed), a.Reason)
	}
}
