package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/kafka"
)

// TestIntegrationTopicsThatBreakTheDesign: a compacted topic, a size-bound
// results topic and an output topic that cannot hold the flow's largest
// record are refused, each with what to change.
func TestIntegrationTopicsThatBreakTheDesign(t *testing.T) {
	brokers := processortest.Brokers(t)
	topo, f := processortest.Topology(t, brokers, `
timeout: 2s
targets: [{name: a}]
limits: {max_aggregate_bytes: 900KiB}
`)
	processortest.CreateTopics(t, topo, f)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafka.CheckTopics(ctx, topo, f); err != nil {
		t.Fatalf("topics as created: %v", err)
	}
	adm := processortest.Admin(t, topo)
	processortest.SetTopicConfig(t, adm, f.Topics.Results, "cleanup.policy", "compact")
	processortest.SetTopicConfig(t, adm, f.Topics.Results, "retention.bytes", "1000000")
	processortest.SetTopicConfig(t, adm, f.Topics.Aggregated, "max.message.bytes", "100000")
	processortest.SetTopicConfig(t, adm, f.Topics.DeadLetter, "cleanup.policy", "compact,delete")
	err := kafka.CheckTopics(ctx, topo, f)
	if err == nil {
		t.Fatal("CheckTopics accepted the changed topics")
	}
	for _, want := range []string{
		"topic " + f.Topics.Results + ": cleanup.policy is compact, want delete",
		"topic " + f.Topics.Results + ": retention.bytes is 1000000, want -1",
		"topic " + f.Topics.Aggregated + ": max.message.bytes is 100000, below the flow's largest record here",
		"set max.message.bytes=923648",
		"topic " + f.Topics.DeadLetter + ": cleanup.policy is compact,delete, want delete",
		"scattergather topics create",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckTopics error lacks %q:\n%v", want, err)
		}
	}
	if !kafka.IsPermanent(err) {
		t.Errorf("a topic that breaks the design is not a permanent error: %v", err)
	}
}

func TestTopicConfigs(t *testing.T) {
	topo, f := processortest.Topology(t, []string{"127.0.0.1:1"}, `
timeout: 2s
targets: [{name: a}]
limits: {max_payload_bytes: 2MiB}
`)
	get := func(topic, key string) string {
		if v := kafka.TopicConfigs(topo, f, topic)[key]; v != nil {
			return *v
		}
		return "<unset>"
	}
	for _, c := range []struct{ topic, key, want string }{
		{f.Topics.Results, "cleanup.policy", "delete"},
		{f.Topics.Results, "retention.bytes", "-1"},
		{f.Topics.Results, "message.timestamp.type", "LogAppendTime"},
		{f.Topics.Results, "max.message.bytes", "2099200"}, // 2 MiB of payload and the record's overhead
		{f.Targets[0].Topic, "max.message.bytes", "2099200"},
		{f.Topics.Aggregated, "max.message.bytes", "1048588"}, // the broker's default holds 900 KiB
		{f.Topics.DeadLetter, "cleanup.policy", "delete"},
		{f.Topics.DeadLetter, "max.message.bytes", "<unset>"},
		{f.Topics.Aggregated, "retention.bytes", "<unset>"},
		{f.Topics.Results, "min.insync.replicas", "<unset>"}, // one replica: the broker's default
	} {
		if got := get(c.topic, c.key); got != c.want {
			t.Errorf("%s %s = %s, want %s", c.topic, c.key, got, c.want)
		}
	}
}

func TestMinInsyncReplicas(t *testing.T) {
	for rf, want := range map[int]string{1: "<unset>", 2: "<unset>", 3: "2", 5: "2"} {
		topo, f := processortest.Topology(t, []string{"127.0.0.1:1"}, `
timeout: 2s
targets: [{name: a}]
`)
		topo.Kafka.ReplicationFactor = rf
		got := "<unset>"
		if v := kafka.TopicConfigs(topo, f, f.Topics.Results)["min.insync.replicas"]; v != nil {
			got = *v
		}
		if got != want {
			t.Errorf("replication factor %d: min.insync.replicas = %s, want %s", rf, got, want)
		}
	}
}
