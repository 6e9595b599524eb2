package gather_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// downRegistry is a schema registry that does not answer.
// A record the gather cannot decode because the schema registry does not
// answer is not the record's fault: it is not dead-lettered; the fold
// fails, so that the transaction aborts and the record is read again.
func TestRegistryUnavailableIsNotADeadLetter(t *testing.T) {
	codec := schemas.NewCodec()
	codec.SetSchemaSource(schemas.SchemaSourceFunc(func(context.Context, uint32) (string, error) {
		return "", errors.New("connection refused") // a registry that does not answer
	}), 0)
	f, err := gather.NewFlow(flowConfig(t, "{type: all}", "{type: collect}"), codec)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open("", store.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	part := f.NewPartition(0, db.Partition(0), store.Position{})
	framed := []byte{0, 0, 0, 0, 42, 2, 'x'} // the registry framing, schema id 42
	var outs []gather.Output
	err = part.Apply(gather.Record{Offset: 0, TimeMs: 1000, Value: framed}, func(o gather.Output) { outs = append(outs, o) })
	if !errors.Is(err, schemas.ErrRegistryUnavailable) || len(outs) != 0 {
		t.Fatalf("Apply = %v with %d outputs; want ErrRegistryUnavailable and no dead letter", err, len(outs))
	}
}
