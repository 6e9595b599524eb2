package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/avro"

	"github.com/scattergather/scattergather/schemas"
)

// FormatVersion is the version of the key and value layout. State written
// with another version is discarded and rebuilt from the log.
const FormatVersion = 3

// Errors returned by the store.
var (
	// ErrKeyTooLong: a request id longer than schemas.MaxRequestIDBytes.
	ErrKeyTooLong = errors.New("store: request id too long")
)

// Request is the state of one open request: its manifest and counters.
// Answers are stored beside it, one key per task.
type Request struct {
	RequestID      string             `avro:"request_id"`
	Tasks          []schemas.TaskRef  `avro:"tasks"`
	Strategy       string             `avro:"strategy"`
	Quorum         int32              `avro:"quorum"`
	MaxFailures    int32              `avro:"max_failures"`
	OpenedMs       int64              `avro:"opened_ms"`
	DeadlineMs     int64              `avro:"deadline_ms"`
	ManifestOffset int64              `avro:"manifest_offset"`
	Attributes     schemas.Attributes `avro:"attributes"`
	OK             int32              `avro:"ok"`
	Failed         int32              `avro:"failed"`
	Duplicates     int32              `avro:"duplicates"`
	// Seen has bit i set once task i answered: duplicates are recognised
	// without reading the answers.
	Seen []byte `avro:"seen"`
}

// HasAnswered reports whether task index answered.
func (r *Request) HasAnswered(index int) bool {
	return index/8 < len(r.Seen) && r.Seen[index/8]&(1<<(index%8)) != 0
}

// SetAnswered records that task index answered.
func (r *Request) SetAnswered(index int) {
	for len(r.Seen) <= index/8 {
		r.Seen = append(r.Seen, 0)
	}
	r.Seen[index/8] |= 1 << (index % 8)
}

// Answered is the number of distinct tasks that answered.
func (r *Request) Answered() int { return int(r.OK + r.Failed) }

// Answer is one task's answer as the fold keeps it until completion.
type Answer struct {
	Index      int32  `avro:"index"` // position of the task in Request.Tasks
	OK         bool   `avro:"ok"`
	Payload    []byte `avro:"payload"`
	Error      string `avro:"error"`
	LogMs      int64  `avro:"log_ms"` // log time of the result record
	Attempts   int32  `avro:"attempts"`
	DurationMs int64  `avro:"duration_ms"`
}

// Closed remembers a completed request for a while.
type Closed struct {
	ExpiresMs      int64 `avro:"expires_ms"`
	ManifestOffset int64 `avro:"manifest_offset"`
}

// Position is where a partition's state stands in the log. It is written in
// the same batch as the state it describes.
type Position struct {
	Version int32 `avro:"version"`
	// Epoch changes when the gather stage is replayed; state of another
	// epoch is stale.
	Epoch string `avro:"epoch"`
	// Next is the offset after the last record folded into this state.
	Next int64 `avro:"next"`
	// Oldest is the smallest manifest offset still needed: of the oldest
	// open or remembered closed request, or Next when there is none. A
	// rebuild starts here.
	Oldest     int64 `avro:"oldest"`
	StreamTime int64 `avro:"stream_time"`
	Open       int64 `avro:"open"`
	// OldestStreamTime is the stream time once the manifest at Oldest was
	// folded (StreamTime when Oldest is Next): a rebuild from Oldest
	// starts with it, so that it decides as the first run did even where
	// log times go back (a leader failover with clock skew).
	OldestStreamTime int64 `avro:"oldest_stream_time"`
}

var (
	requestSchema  = avro.MustSchemaFor[Request](avro.WithNamespace("io.scattergather.store"))
	answerSchema   = avro.MustSchemaFor[Answer](avro.WithNamespace("io.scattergather.store"))
	closedSchema   = avro.MustSchemaFor[Closed](avro.WithNamespace("io.scattergather.store"))
	positionSchema = avro.MustSchemaFor[Position](avro.WithNamespace("io.scattergather.store"))
)

// Key tags: the byte after the partition prefix.
const (
	tagPosition = 'm'
	tagRequest  = 'o'
	tagAnswer   = 'a'
	tagDeadline = 'd'
	tagClosed   = 'c'
	tagExpiry   = 'x'
	tagOffset   = 's'
)

// DB is the Pebble store of one gather process and flow. Each partition's
// state lives under its own key prefix. A DB is safe for concurrent use;
// a Partition and its Txns are not.
type DB struct {
	pdb          *pebble.DB
	requestCache int64
}

// Option configures Open.
type Option func(*options)

type options struct {
	pebble       pebble.Options
	blockCache   int64
	requestCache int64
}

// WithFS makes the store use fs instead of the disk (vfs.NewMem() in tests).
func WithFS(fs vfs.FS) Option { return func(o *options) { o.pebble.FS = fs } }

// WithCacheSize sets Pebble's block cache size in bytes. Default 64MiB.
// The memtables come on top (see Open).
func WithCacheSize(n int64) Option {
	return func(o *options) { o.blockCache = n }
}

// WithRequestCache sets the budget in bytes of each Partition's cache of
// open requests (0: none). Default DefaultRequestCache.
func WithRequestCache(n int64) Option {
	return func(o *options) { o.requestCache = n }
}

const (
	memTableSize    = 32 << 20
	memTablesQueued = 2
)

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts ...Option) (*DB, error) {
	o := &options{blockCache: 64 << 20, requestCache: DefaultRequestCache, pebble: pebble.Options{
		Logger: quietLogger{},
		// Most requests open and close within seconds: a larger memtable
		// lets their keys and tombstones meet before they are flushed, so
		// fewer reach the disk and compactions.
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: memTablesQueued,
		// No write-ahead log: the store is a cache of the Kafka log. After a
		// crash it holds the state at its last flush, with the position of
		// that state; the gather then re-folds the tail from the log (or
		// rebuilds), exactly as when it took a partition from another host.
		DisableWAL: true,
	}}
	for _, opt := range opts {
		opt(o)
	}
	// Pebble charges its memtables to the block cache: the one being
	// written, those waiting to be flushed (up to memTablesQueued in all)
	// and one kept for reuse. Without room for them on top, the memtables
	// take the whole cache once they reach their full size, and every
	// read of a table decompresses its blocks again.
	o.pebble.CacheSize = o.blockCache + (memTablesQueued+1)*memTableSize
	pdb, err := pebble.Open(dir, &o.pebble)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return &DB{pdb: pdb, requestCache: o.requestCache}, nil
}

// Close closes the store.
func (db *DB) Close() error {
	// Without a WAL, what is not flushed is lost on close.
	if err := db.pdb.Flush(); err != nil {
		_ = db.pdb.Close()
		return fmt.Errorf("store: flush: %w", err)
	}
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// DiskUsage is the size of the store's files in bytes.
func (db *DB) DiskUsage() uint64 { return db.pdb.Metrics().DiskSpaceUsage() }

// Partition returns the state of one partition. A partition's state must
// be changed through one Partition: each keeps bounds of its indexes and a
// cache of its open requests, which the changes made through another do
// not update.
func (db *DB) Partition(p int32) *Partition {
	var prefix [4]byte
	binary.BigEndian.PutUint32(prefix[:], uint32(p))
	return &Partition{db: db, prefix: prefix, cache: newRequestCache(db.requestCache)}
}

// Partition is one partition's state.
type Partition struct {
	db     *DB
	prefix [4]byte
	floor  floors // of the committed state
	// cache holds open requests of the committed state (nil: none), so
	// that the fold of a result need not read and decode its request and
	// answers from Pebble.
	cache *requestCache
}

// floors are lower bounds of the index scans. The deadline and expiry
// indexes are consumed from their low end as stream time advances, and
// the offset index's minimum only grows, so each scan starts where the
// last one ended instead of stepping over the tombstones of every entry
// ever deleted (an LSM keeps them until compaction), which made each scan
// cost grow with the history of the partition.
type floors struct {
	deadline, expiry, offset int64
	// nextDeadline and nextExpiry are lower bounds of the smallest entry
	// of those indexes (0: unknown, math.MaxInt64: none), so that most
	// records, which make nothing due, need no scan at all. Opening a
	// request lowers nextDeadline; a scan makes it exact and starts there,
	// past the tombstones of the requests closed before it.
	nextDeadline, nextExpiry int64
}

const none = math.MaxInt64

// deadlineFrom is where a scan of the deadline index starts: no entry is
// below the deadlines already fired, nor below the smallest entry's lower
// bound when it is known. Starting at the higher of the two skips the
// tombstones of the requests that closed before their deadline (most of
// them), which otherwise every scan steps over until they are compacted.
func (f *floors) deadlineFrom() int64 {
	if f.nextDeadline == 0 || f.nextDeadline == none {
		return f.deadline
	}
	return max(f.deadline, f.nextDeadline)
}

func lower(hint, v int64) int64 {
	if hint == 0 {
		return 0 // unknown stays unknown
	}
	return min(hint, v)
}

func (p *Partition) key(tag byte, parts ...[]byte) []byte {
	n := 5
	for _, b := range parts {
		n += len(b)
	}
	k := make([]byte, 0, n)
	k = append(k, p.prefix[:]...)
	k = append(k, tag)
	for _, b := range parts {
		k = append(k, b...)
	}
	return k
}

func be64(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:]
}

// idPart encodes a request id with a length prefix, so that no id is a
// prefix of another's keys.
func idPart(id string) []byte {
	b := make([]byte, 2, 2+len(id))
	binary.BigEndian.PutUint16(b, uint16(len(id)))
	return append(b, id...)
}

// Position returns the stored position; ok is false when the partition has
// no state.
func (p *Partition) Position() (pos Position, ok bool, err error) {
	v, closer, err := p.db.pdb.Get(p.key(tagPosition))
	if errors.Is(err, pebble.ErrNotFound) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, fmt.Errorf("store: read position: %w", err)
	}
	defer closer.Close()
	if _, err := positionSchema.Decode(v, &pos); err != nil {
		// State of an older layout: reported as of an unknown version,
		// which the gather discards and rebuilds.
		return Position{Version: -1}, true, nil
	}
	return pos, true, nil
}

// Discard deletes all of the partition's state.
func (p *Partition) Discard() error {
	start := p.prefix[:]
	var end [4]byte
	binary.BigEndian.PutUint32(end[:], binary.BigEndian.Uint32(start)+1)
	if err := p.db.pdb.DeleteRange(start, end[:], pebble.NoSync); err != nil {
		return fmt.Errorf("store: discard partition: %w", err)
	}
	p.floor = floors{}
	p.cache.reset()
	return nil
}

// Begin starts a Txn over the partition's state at position pos: an
// overlay of changes that reads its own writes, applied by Commit and
// dropped by Discard.
func (p *Partition) Begin(pos Position) *Txn {
	// A cache that cannot be loaded is incomplete: the Txn reads what it
	// does not hold from Pebble, which reports the error.
	_ = p.load()
	return &Txn{p: p, b: p.db.pdb.NewIndexedBatch(), open: pos.Open, floor: p.floor}
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...)) // pebble's contract: Fatalf does not return
}

var _ io.Closer = (*DB)(nil)

// NextDeadline returns the earliest deadline of an open request in the
// stored (committed) state.
func (p *Partition) NextDeadline() (ms int64, ok bool, err error) {
	return nextDeadline(p.db.pdb, p, &p.floor)
}

// Flush writes the memtable to disk, for measuring the store's size.
func (db *DB) Flush() error {
	if err := db.pdb.Flush(); err != nil {
		return fmt.Errorf("store: flush: %w", err)
	}
	return nil
}
