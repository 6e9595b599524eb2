package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
	"github.com/scattergather/scattergather/store"
)

// Fire is the cost of firing a number of due deadlines.
type Fire struct {
	Open int     `json:"open"`
	Due  int     `json:"due"`
	Ms   float64 `json:"ms"`
}

// StateResult is the gather's state at scale.
type StateResult struct {
	Open    int     `json:"open"`
	FoldMs  float64 `json:"fold_ms"`
	RSSMiB  float64 `json:"resident_mib"`
	HeapMiB float64 `json:"go_heap_mib"`
	DiskMiB float64 `json:"pebble_disk_mib"`
	Fire    []Fire  `json:"fire"`
}

// partitionFold folds manifests straight into a gather partition on a
// Pebble store on disk, without Kafka: the state of one gather.
type partitionFold struct {
	db     *store.DB
	fold   *gather.Partition
	offset int64
	codec  *schemas.Codec
}

func newPartitionFold(dir string) (*partitionFold, error) {
	t, err := topology.Parse("bench", []byte(`
flows:
  - name: bench
    timeout: 1h
    targets: [{name: a}, {name: b}, {name: c}]
    consolidate: {type: min, field: price}
    limits: {max_open_requests: 100000000}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	db, err := store.Open(dir)
	if err != nil {
		return nil, err
	}
	f, err := gather.NewFlow(t.Flows[0], nil)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &partitionFold{db: db, fold: f.NewPartition(0, db.Partition(0), store.Position{}), codec: schemas.Default}, nil
}

func (p *partitionFold) apply(ms int64, v any, emit func(gather.Output)) error {
	b, err := p.codec.Encode(v)
	if err != nil {
		return err
	}
	err = p.fold.Apply(gather.Record{Offset: p.offset, TimeMs: ms, Value: b}, emit)
	p.offset++
	return err
}

// open folds n manifests, one a millisecond of log time from base, each
// with a one-hour timeout, committing every 10,000 as the gather would.
func (p *partitionFold) open(base int64, from, n int) error {
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("req-%09d", i)
		m := &schemas.Manifest{RequestID: id, Flow: "bench", Strategy: "all", MaxFailures: -1, TimeoutMs: time.Hour.Milliseconds(),
			Tasks: []schemas.TaskRef{{TaskID: id + "/a", Target: "a", Item: -1}, {TaskID: id + "/b", Target: "b", Item: -1}, {TaskID: id + "/c", Target: "c", Item: -1}}}
		if err := p.apply(base+int64(i), m, func(gather.Output) {}); err != nil {
			return err
		}
		if (i+1)%10_000 == 0 {
			if err := p.fold.Commit(); err != nil {
				return err
			}
		}
	}
	return p.fold.Commit()
}

// fire writes a tick at log time ms and returns what it fired: the
// requests open before it (read from the committed state), how many
// aggregates it produced, and how long it took, commit included.
func (p *partitionFold) fire(ms int64) (Fire, error) {
	open := int(p.fold.Position().Open)
	n := 0
	start := time.Now()
	if err := p.apply(ms, &schemas.Tick{SentMs: ms}, func(o gather.Output) {
		if o.Kind == gather.ToAggregated {
			n++
		}
	}); err != nil {
		return Fire{}, err
	}
	err := p.fold.Commit()
	return Fire{Open: open, Due: n, Ms: float64(time.Since(start).Microseconds()) / 1000}, err
}

func rssMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// State holds n open requests in one gather partition (Pebble on disk in
// dir) and reports resident memory, disk size and the cost of firing
// deadlines: 1,000 and 10,000 due among n open, and 1,000 due among 10,000
// open in a fresh store, to show the cost grows with the number due, not
// the number open.
func State(dir string, n int) (*StateResult, error) {
	const base = 1_700_000_000_000
	hour := time.Hour.Milliseconds()
	res := &StateResult{Open: n}

	small, err := newPartitionFold(dir + "/small")
	if err != nil {
		return nil, err
	}
	if err := small.open(base, 0, 10_000); err != nil {
		return nil, err
	}
	fired, err := small.fire(base + hour + 1_000) // deadlines base+i+1h: the first 1,000 are due
	if err != nil {
		return nil, err
	}
	res.Fire = append(res.Fire, fired)
	small.db.Close()

	big, err := newPartitionFold(dir + "/big")
	if err != nil {
		return nil, err
	}
	defer big.db.Close()
	start := time.Now()
	if err := big.open(base, 0, n); err != nil {
		return nil, err
	}
	res.FoldMs = float64(time.Since(start).Microseconds()) / 1000
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.RSSMiB, res.HeapMiB = rssMiB(), float64(ms.HeapAlloc)/(1<<20)
	if err := big.db.Flush(); err != nil {
		return nil, err
	}
	res.DiskMiB = float64(big.db.DiskUsage()) / (1 << 20)
	for _, upTo := range []int64{1_000, 11_000} {
		fired, err := big.fire(base + hour + upTo)
		if err != nil {
			return nil, err
		}
		res.Fire = append(res.Fire, fired)
	}
	return res, nil
}
