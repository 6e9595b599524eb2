package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Repeated is a figure measured several times.
type Repeated struct {
	// Runs are the measurements, in the order taken.
	Runs []float64 `json:"runs"`
	// Median of Runs.
	Median float64 `json:"median"`
	// Spread is (max − min) ÷ median: 0.2 means the runs differ by 20 %
	// of the median.
	Spread float64 `json:"spread"`
}

// newRepeated summarizes runs; it keeps runs as given.
func newRepeated(runs []float64) Repeated {
	r := Repeated{Runs: runs}
	if len(runs) == 0 {
		return r
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		r.Median = s[n/2]
	} else {
		r.Median = (s[n/2-1] + s[n/2]) / 2
	}
	if r.Median > 0 {
		r.Spread = (s[len(s)-1] - s[0]) / r.Median
	}
	return r
}

// SpreadWarning is the spread of the broker limit's runs from which the
// bench warns that the machine was not quiet.
const SpreadWarning = 0.2

// RawConfig sets up a measurement of the broker's own limit.
type RawConfig struct {
	Brokers    []string
	Partitions int
	// ReplicationFactor of the topic (default 1).
	ReplicationFactor int
	// RecordBytes is the size of each record's value.
	RecordBytes int
	// Warmup is the length of each discarded warm-up run (default: Each).
	Warmup time.Duration
	// MaxWarmups bounds the warm-up runs, which go on until two in a row
	// agree within SettleWithin (default 5).
	MaxWarmups int
	// Each is the length of every measured run (default 3s): the
	// producer writes for that long, the run ends when the consumer has
	// read the last record.
	Each time.Duration
	// Repeats is the number of measured runs (default 5).
	Repeats int
	// Progress receives a line per run; may be nil.
	Progress io.Writer
}

func (c *RawConfig) defaults() {
	if c.Each == 0 {
		c.Each = 3 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = c.Each
	}
	if c.Repeats == 0 {
		c.Repeats = 5
	}
	if c.MaxWarmups < 2 {
		c.MaxWarmups = 5
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.RecordBytes == 0 {
		c.RecordBytes = 200
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// BrokerLimit is the broker's own produce→consume limit, in records per
// second: the median and spread of Repeats runs after the warm-up runs.
type BrokerLimit struct {
	Repeated
	RecordBytes int     `json:"record_bytes"`
	EachSeconds float64 `json:"seconds_each"`
	// Warmup is the rate of the last discarded warm-up run.
	Warmup float64 `json:"warmup"`
	// Warmups are the rates of every warm-up run, in order.
	Warmups []float64 `json:"warmups"`
}

// SettleWithin is how close two warm-up runs in a row must come, as a
// share of the first, for the broker to count as warm.
const SettleWithin = 0.1

// warmUntilSettled runs warm-up runs until two in a row agree within
// SettleWithin, or max runs were made, and returns their rates. A broker
// started a moment ago speeds up over its first runs as its JVM compiles
// the paths they use; one run is not always enough.
func warmUntilSettled(run func() (float64, error), max int, progress io.Writer) ([]float64, error) {
	var rates []float64
	for len(rates) < max {
		rate, err := run()
		if err != nil {
			return rates, err
		}
		rates = append(rates, rate)
		fmt.Fprintf(progress, "  broker limit, warm-up run %d: %.0f records/s (discarded)\n", len(rates), rate)
		if n := len(rates); n >= 2 && math.Abs(rates[n-1]-rates[n-2]) <= SettleWithin*rates[n-2] {
			break
		}
	}
	return rates, nil
}

// Raw measures the broker's own limit: an idempotent producer writing
// records of cfg.RecordBytes as fast as it can and a read_committed
// consumer reading them (one hop), in records per second from a run's
// first produce to its last record read. Warm-up runs on the same topic
// and clients come first and are discarded (see warmUntilSettled); then
// cfg.Repeats runs of cfg.Each.
func Raw(ctx context.Context, cfg RawConfig) (*BrokerLimit, error) {
	cfg.defaults()
	topic := fmt.Sprintf("bench-raw-%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, int32(cfg.Partitions), int16(max(cfg.ReplicationFactor, 1)), nil, topic); err != nil {
		return nil, err
	}
	defer adm.DeleteTopics(context.Background(), topic) //nolint:errcheck // best effort
	for {
		d, err := adm.ListTopics(ctx, topic)
		if err == nil && len(d[topic].Partitions) == cfg.Partitions {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	value := make([]byte, cfg.RecordBytes)
	res := &BrokerLimit{RecordBytes: cfg.RecordBytes, EachSeconds: cfg.Each.Seconds()}
	warm, err := warmUntilSettled(func() (float64, error) {
		return rawRun(ctx, cl, cons, topic, value, cfg.Warmup)
	}, cfg.MaxWarmups, cfg.Progress)
	if err != nil {
		return nil, err
	}
	res.Warmups, res.Warmup = warm, warm[len(warm)-1]
	var runs []float64
	for i := range cfg.Repeats {
		rate, err := rawRun(ctx, cl, cons, topic, value, cfg.Each)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Progress, "  broker limit, run %d/%d: %.0f records/s\n", i+1, cfg.Repeats, rate)
		runs = append(runs, rate)
	}
	res.Repeated = newRepeated(runs)
	return res, nil
}

// rawRun produces for d and returns the records per second from the
// first produce to the consumer's reading the last of them. The consumer
// must have read every earlier record.
func rawRun(ctx context.Context, cl, cons *kgo.Client, topic string, value []byte, d time.Duration) (float64, error) {
	var (
		produced atomic.Int64
		done     atomic.Bool
		prodErr  atomic.Pointer[error]
	)
	start := time.Now()
	go func() {
		defer done.Store(true)
		for i := 0; time.Since(start) < d && ctx.Err() == nil; i++ {
			produced.Add(1)
			cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					prodErr.CompareAndSwap(nil, &err)
				}
			})
		}
	}()
	var got int64
	lastRead := start
	for !done.Load() || got < produced.Load() {
		if e := prodErr.Load(); e != nil {
			return 0, *e
		}
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fs := cons.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && ferr == nil {
				ferr = err
			}
		})
		if ferr != nil {
			return 0, ferr
		}
		now := time.Now()
		if n := fs.NumRecords(); n > 0 {
			got += int64(n)
			lastRead = now
		} else if now.Sub(lastRead) > 30*time.Second {
			return 0, fmt.Errorf("bench: broker limit: no record read for 30s (%d of %d)", got, produced.Load())
		}
	}
	if got == 0 {
		return 0, errors.New("bench: broker limit: nothing produced")
	}
	return float64(got) / lastRead.Sub(start).Seconds(), nil
}
