package kafka_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/gather"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/schemas"
)

// BenchmarkRebuild measures how long a gather takes to rebuild, from the
// log, the state of one partition holding N open requests (default
// 100,000; SG_REBUILD_REQUESTS sets it) when its local state is gone. Run
// it against a real broker without -race:
//
//	SG_KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench Rebuild -benchtime 1x ./processor/kafka
func BenchmarkRebuild(b *testing.B) {
	brokers := processortest.Brokers(b)
	n := 100_000
	if v := os.Getenv("SG_REBUILD_REQUESTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	topo, f := processortest.Topology(b, brokers, `
partitions: 1
timeout: 1h
targets: [{name: a}, {name: b}, {name: c}]
`)
	processortest.CreateTopics(b, topo, f)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	errs := make(chan error, 1)
	for i := range n {
		id := fmt.Sprintf("open-%07d", i)
		m := &schemas.Manifest{RequestID: id, Flow: f.Name, Strategy: "all", MaxFailures: -1, TimeoutMs: time.Hour.Milliseconds(),
			Tasks: []schemas.TaskRef{{TaskID: id + "/a", Target: "a", Item: -1}, {TaskID: id + "/b", Target: "b", Item: -1}, {TaskID: id + "/c", Target: "c", Item: -1}}}
		v, err := schemas.Encode(m)
		if err != nil {
			b.Fatal(err)
		}
		cl.Produce(ctx, &kgo.Record{Topic: f.Topics.Results, Partition: 0, Key: []byte(id), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	// The committed position of a gather that had folded them all: every
	// request still open, the oldest at offset 0.
	meta := gather.ReplayMeta("", 0).String()
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: f.Topics.Results, Partition: 0, At: int64(n), LeaderEpoch: -1, Metadata: meta})
	if _, err := kadm.NewClient(cl).CommitOffsets(ctx, topo.Group(f, "gather"), os); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	for range b.N {
		g, err := kafka.NewGather(topo, f, b.TempDir(), kafka.WithInstance(processortest.Unique("g")))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		stop := processortest.Start(b, g)
		processortest.Eventually(b, 10*time.Minute, "state rebuilt", func() bool { return g.Stats().Rebuilt >= int64(n) })
		took := time.Since(start)
		stop()
		b.ReportMetric(took.Seconds(), "s/rebuild")
		b.ReportMetric(float64(n)/took.Seconds(), "requests/s")
		b.Logf("rebuilt %d open requests in %s", n, took.Round(time.Millisecond))
	}
}
