package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
)

const oneTarget = `
timeout: 2s
targets: [{name: a}]
`

// fetchError is a poll whose only partition failed with err.
func fetchError(topic string, err error) kgo.Fetches {
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topic, Partitions: []kgo.FetchPartition{{Partition: 0, Err: err}}}}}}
}

// TestStatusDuringOutage: a ready gateway is not ready, saying why, while
// its reader's polls fail or a request could not be produced, and ready
// again once they succeed.
func TestStatusDuringOutage(t *testing.T) {
	topo, f := processortest.Topology(t, []string{"127.0.0.1:1"}, oneTarget)
	g, err := New(topo, nil, WithAddr(""), WithProduceTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if st := g.Status(); st.Ready || st.Detail != "not started" {
		t.Fatalf("before Run: %+v", st)
	}
	g.readyOnce.Do(func() { close(g.ready) })
	notReady := func(want string) {
		t.Helper()
		if st := g.Status(); st.Ready || !strings.Contains(st.Detail, want) {
			t.Errorf("status %+v, want not ready with %q", st, want)
		}
	}
	ready := func() {
		t.Helper()
		if st := g.Status(); !st.Ready || st.Detail != "" {
			t.Errorf("status %+v, want ready", st)
		}
	}
	ready()

	g.polled(fetchError(f.Topics.Aggregated, errors.New("dial tcp 127.0.0.1:1: connection refused")))
	notReady("waiting for the brokers: dial tcp 127.0.0.1:1: connection refused")
	g.polled(kgo.Fetches{})
	ready()
	// The end of the gateway's own context is no outage.
	g.polled(fetchError(f.Topics.Aggregated, context.Canceled))
	ready()

	g.produced(context.DeadlineExceeded)
	notReady("Kafka did not acknowledge a request within 300ms")
	g.produced(nil)
	ready()
	g.produced(errors.New("NOT_LEADER_FOR_PARTITION"))
	notReady("a request could not be written to Kafka: NOT_LEADER_FOR_PARTITION")
	// A failed production outranks the reader's errors until it is over.
	g.polled(fetchError(f.Topics.Aggregated, errors.New("EOF")))
	notReady("NOT_LEADER_FOR_PARTITION")
	g.produced(nil)
	notReady("waiting for the brokers: EOF")
	g.polled(kgo.Fetches{})
	ready()
}

// TestStatusFollowsBroker: a request that could not be produced leaves a
// running gateway not ready only until the broker answers again, even
// when no request follows; a broker that stops answering makes it not
// ready.
func TestStatusFollowsBroker(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topo, f := processortest.Topology(t, c.ListenAddrs(), oneTarget)
	processortest.CreateTopics(t, topo, f)
	g, err := New(topo, nil, WithAddr(""))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-g.Ready():
	case <-time.After(time.Minute):
		t.Fatalf("not ready: %+v", g.Status())
	}
	g.produced(context.DeadlineExceeded)
	if st := g.Status(); st.Ready {
		t.Fatalf("ready after a failed production: %+v", st)
	}
	awaitStatus := func(what string, ok func(kafka.Status) bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !ok(g.Status()); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %+v a minute later", what, g.Status())
			}
			<-time.After(20 * time.Millisecond)
		}
	}
	awaitStatus("broker answering", func(st kafka.Status) bool { return st.Ready })
	c.Close()
	awaitStatus("broker gone", func(st kafka.Status) bool {
		return !st.Ready && strings.HasPrefix(st.Detail, "the broker does not answer: ")
	})
}
