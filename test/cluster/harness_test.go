package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scattergather/scattergather/internal/proctest"
	"github.com/scattergather/scattergather/processor/kafka"
)

// EnvScript names scripts/kafka-cluster.sh; without it the suite skips.
const EnvScript = "SG_CLUSTER_SCRIPT"

// cluster is the three-node cluster scripts/kafka-cluster.sh runs.
type cluster struct {
	script    string
	bootstrap []string
	nodes     []int32
}

// openCluster starts the cluster (a no-op when it runs) and reads what
// the script prints.
func openCluster(t *testing.T) *cluster {
	t.Helper()
	script := os.Getenv(EnvScript)
	if script == "" {
		t.Skipf("%s is not set: no three-node cluster to run against", EnvScript)
	}
	c := &cluster{script: script}
	out := c.run(t, "start")
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "CLUSTER_BOOTSTRAP":
			c.bootstrap = strings.Split(v, ",")
		case "NODE_IDS":
			for _, f := range strings.Fields(v) {
				n, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("NODE_IDS=%s: %v", v, err)
				}
				c.nodes = append(c.nodes, int32(n))
			}
		}
	}
	if len(c.bootstrap) == 0 || len(c.nodes) < 3 {
		t.Fatalf("%s start printed no bootstrap list or fewer than three nodes:\n%s", script, out)
	}
	return c
}

// run runs the script with args and returns its stdout; it fails the test
// if the script fails.
func (c *cluster) run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.script, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", c.script, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// kill kills node n with SIGKILL and returns once it is gone.
func (c *cluster) kill(t testing.TB, n int32) { c.run(t, "kill", strconv.Itoa(int(n))) }

// startNode starts node n and returns once it serves clients.
func (c *cluster) startNode(t testing.TB, n int32) {
	c.run(t, "start-node", strconv.Itoa(int(n)))
}

// admin returns an admin client on the cluster, closed with the test.
func (c *cluster) admin(t testing.TB) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.bootstrap...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// heal starts the nodes that are down and waits until every partition of
// every topic, the internal ones too, has a leader and all its replicas in
// sync: the next fault then starts from a whole cluster.
func (c *cluster) heal(t testing.TB) {
	t.Helper()
	c.run(t, "start")
	adm := c.admin(t)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		last := insync(adm)
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes the cluster is not whole: %s", last)
		}
		<-time.After(200 * time.Millisecond)
	}
}

// insync returns "" when every partition has a leader and all its
// replicas in sync, else the first that has not.
func insync(adm *kadm.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return err.Error()
	}
	for _, d := range td {
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 || len(p.ISR) < len(p.Replicas) {
				return fmt.Sprintf("%s/%d: leader %d, in sync %v of %v", d.Topic, p.Partition, p.Leader, p.ISR, p.Replicas)
			}
		}
	}
	return ""
}

// leaders counts the partitions of topic each node leads.
func (c *cluster) leaders(t testing.TB, topic string) map[int32]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := c.admin(t).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int{}
	for _, p := range td[topic].Partitions {
		out[p.Leader]++
	}
	return out
}

// newPipeline is a flow with six partitions on the cluster, its topics
// replicated three times, and a quiet producer for the load; each of
// tune, if any, changes the configuration first.
func newPipeline(t *testing.T, c *cluster, tune ...func(*proctest.Config)) *proctest.Pipeline {
	t.Helper()
	cfg := proctest.Config{
		Brokers:           c.bootstrap,
		Prefix:            "c",
		Timeout:           "60s",
		Partitions:        6,
		ReplicationFactor: 3,
		SendWithin:        5 * time.Minute,
		AggregatesWithin:  4 * time.Minute,
		SenderOpts:        []kafka.Opt{kafka.WithLogger(slog.New(slog.DiscardHandler))},
	}
	for _, f := range tune {
		f(&cfg)
	}
	p := proctest.New(t, cfg)
	checkReplication(p, c)
	return p
}

// checkReplication fails the test unless every topic of the flow has three
// replicas and min.insync.replicas=2, as topics create makes them.
func checkReplication(p *proctest.Pipeline, c *cluster) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := c.admin(p.T)
	topics := p.Flow.AllTopics()
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		p.T.Fatal(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		p.T.Fatal(err)
	}
	for _, topic := range topics {
		for _, part := range td[topic].Partitions {
			if len(part.Replicas) != 3 {
				p.T.Fatalf("%s/%d has replicas %v, want three", topic, part.Partition, part.Replicas)
			}
		}
		rc, err := rcs.On(topic, nil)
		if err != nil {
			p.T.Fatal(err)
		}
		for _, cfg := range rc.Configs {
			if cfg.Key == "min.insync.replicas" && cfg.MaybeValue() != "2" {
				p.T.Fatalf("%s: min.insync.replicas=%s, want 2", topic, cfg.MaybeValue())
			}
		}
	}
}

// standard runs one scatter, two workers and two gathers, and waits until
// they are ready.
func standard(p *proctest.Pipeline) map[string]*proctest.Proc {
	ps := map[string]*proctest.Proc{
		"scatter": p.Start("scatter", "scatter", "s1"),
		"worker1": p.Start("worker1", "worker", "w1"),
		"worker2": p.Start("worker2", "worker", "w2"),
		"gather1": p.Start("gather1", "gather", "g1", "--state-dir", filepath.Join(p.Dir, "state-g1")),
		"gather2": p.Start("gather2", "gather", "g2", "--state-dir", filepath.Join(p.Dir, "state-g2")),
	}
	p.WaitReady(slices.Collect(maps.Values(ps))...)
	return ps
}

// check waits for the fault actions, then asserts every request has
// exactly one aggregate, complete with the cheapest of the three
// deterministic answers, that the read_committed reader saw no duplicate,
// and that no role exited by itself: a role must ride out a broker's
// fault.
func check(p *proctest.Pipeline, n int) {
	p.T.Helper()
	p.Check(n)
	if d := p.Col.Duplicates(); d != 0 {
		p.T.Errorf("the read_committed reader saw %d duplicate aggregates", d)
	}
	p.UnexpectedExits()
}
