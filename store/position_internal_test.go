package store

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/avro"
)

// A position written by an older layout (format version 2 had no
// oldest_stream_time) reads as state of an unknown version, which the
// gather discards and rebuilds, instead of failing the role.
func TestPositionOfAnOlderLayout(t *testing.T) {
	db, err := Open("", WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type positionV2 struct {
		Version    int32  `avro:"version"`
		Epoch      string `avro:"epoch"`
		Next       int64  `avro:"next"`
		Oldest     int64  `avro:"oldest"`
		StreamTime int64  `avro:"stream_time"`
		Open       int64  `avro:"open"`
	}
	old := avro.MustSchemaFor[positionV2](avro.WithNamespace("io.scattergather.store"))
	b, err := old.Encode(&positionV2{Version: 2, Next: 10, Oldest: 4, StreamTime: 99, Open: 1})
	if err != nil {
		t.Fatal(err)
	}
	p := db.Partition(0)
	if err := db.pdb.Set(p.key(tagPosition), b, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	pos, ok, err := p.Position()
	if err != nil || !ok || pos.Version == FormatVersion {
		t.Errorf("Position() = %+v, %v, %v; want state of another version, no error", pos, ok, err)
	}
}
