package gather

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/scattergather/scattergather/store"
)

// CommitMeta is what the gather stores in the metadata of each committed
// offset of the results topic, so that any instance on any host can tell
// whether its local state is current and, if not, where a rebuild starts
// (PlanResume).
type CommitMeta struct {
	Version    int    // store.FormatVersion of the writer
	Epoch      string // changes when the gather stage is replayed
	Oldest     int64  // offset of the oldest manifest still needed
	StreamTime int64  // stream time at the committed offset
	// OldestStreamTime is the stream time once the manifest at Oldest was
	// folded: a rebuild from Oldest starts with it (store.Position).
	OldestStreamTime int64
	// Open is the number of open requests at the committed offset.
	Open int64
}

const metaPrefix = "sg"

// String encodes m as "sg<version>;e=<epoch>;o=<oldest>;t=<stream
// time>;s=<oldest stream time>;n=<open>".
func (m CommitMeta) String() string {
	return fmt.Sprintf("%s%d;e=%s;o=%d;t=%d;s=%d;n=%d", metaPrefix, m.Version, m.Epoch, m.Oldest, m.StreamTime, m.OldestStreamTime, m.Open)
}

// ParseCommitMeta decodes metadata written by String (or by a gather of
// format version 2, which wrote neither s nor n); ok is false for metadata of
// another writer.
func ParseCommitMeta(s string) (m CommitMeta, ok bool) {
	fields := strings.Split(s, ";")
	if len(fields) < 4 || len(fields) > 6 || !strings.HasPrefix(fields[0], metaPrefix) {
		return m, false
	}
	v, err := strconv.Atoi(strings.TrimPrefix(fields[0], metaPrefix))
	if err != nil {
		return m, false
	}
	m.Version = v
	for _, f := range fields[1:] {
		k, val, found := strings.Cut(f, "=")
		if !found {
			return m, false
		}
		switch k {
		case "e":
			m.Epoch = val
		case "o":
			if m.Oldest, err = strconv.ParseInt(val, 10, 64); err != nil {
				return m, false
			}
		case "t":
			if m.StreamTime, err = strconv.ParseInt(val, 10, 64); err != nil {
				return m, false
			}
		case "s":
			if m.OldestStreamTime, err = strconv.ParseInt(val, 10, 64); err != nil {
				return m, false
			}
		case "n":
			if m.Open, err = strconv.ParseInt(val, 10, 64); err != nil {
				return m, false
			}
		default:
			return m, false
		}
	}
	return m, true
}

// MetaOf returns the metadata that commits a partition's state standing at
// pos (the fold's Pending position) with the offset pos.Next.
func MetaOf(pos store.Position) CommitMeta {
	return CommitMeta{Version: store.FormatVersion, Epoch: pos.Epoch, Oldest: pos.Oldest, StreamTime: pos.StreamTime, OldestStreamTime: pos.OldestStreamTime, Open: pos.Open}
}

// ReplayMeta returns the metadata of an offset that a replay of the gather
// stage resets to offset, starting epoch: every instance whose local state
// carries another epoch discards it, and the state is rebuilt from offset
// (nothing before it is needed).
func ReplayMeta(epoch string, offset int64) CommitMeta {
	return CommitMeta{Version: store.FormatVersion, Epoch: epoch, Oldest: offset}
}
