package topology_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scattergather/scattergather/processor/topology"
)

func TestSchemaRegistry(t *testing.T) {
	const pw = "reg-pw-very-secret"
	env := map[string]string{"REG_PASSWORD": pw}
	for _, tc := range []struct {
		name, kafka string
		wantErr     []string // each must appear; none means valid
	}{
		{name: "none", kafka: "  brokers: [b:9092]"},
		{name: "single-object with a registry to read", kafka: "  schema_registry: {url: http://r:8081}"},
		{name: "registry", kafka: "  encoding: registry\n  schema_registry: {url: 'https://r/apis/ccompat/v6', username: u, password: '${REG_PASSWORD}', subject_strategy: topic_record, timeout: 3s}"},
		{name: "registry without schema_registry", kafka: "  encoding: registry", wantErr: []string{"t.yaml:2:13: kafka.encoding: registry needs kafka.schema_registry"}},
		{name: "unknown encoding", kafka: "  encoding: json", wantErr: []string{`kafka.encoding: unknown encoding "json" (one of single-object, registry)`}},
		{name: "no url", kafka: "  schema_registry: {username: u, password: p}", wantErr: []string{"kafka.schema_registry.url: required with schema_registry"}},
		{name: "url without scheme", kafka: "  schema_registry: {url: 'r:8081'}", wantErr: []string{"kafka.schema_registry.url: want http(s)://host[:port][/path]"}},
		{name: "credentials in the url", kafka: "  schema_registry: {url: 'http://u:${REG_PASSWORD}@r:8081'}", wantErr: []string{"kafka.schema_registry.url: give the credentials as username and password"}},
		{name: "username without password", kafka: "  schema_registry: {url: 'http://r', username: u}", wantErr: []string{"kafka.schema_registry.password: username and password go together"}},
		{name: "unknown strategy", kafka: "  schema_registry: {url: 'http://r', subject_strategy: TopicNameStrategy}", wantErr: []string{`kafka.schema_registry.subject_strategy: unknown strategy "TopicNameStrategy" (one of topic, record, topic_record)`}},
		{name: "unknown key", kafka: "  schema_registry: {url: 'http://r', auth: x}", wantErr: []string{"kafka.schema_registry.auth: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := parse(t, kafkaDoc(tc.kafka), env)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("%s\n%v", tc.kafka, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s: want an error", tc.kafka)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error shows the password: %v", err)
			}
			_ = topo
		})
	}
}

func TestSchemaRegistryDefaults(t *testing.T) {
	const pw = "reg-pw-very-secret"
	topo, err := parse(t, kafkaDoc("  schema_registry: {url: 'http://r:8081', username: u, password: '${REG_PASSWORD}'}"), map[string]string{"REG_PASSWORD": pw})
	if err != nil {
		t.Fatal(err)
	}
	k := topo.Kafka
	if k.Encoding != topology.EncodingSingleObject || k.UsesRegistry() {
		t.Errorf("encoding %q, uses registry %v; want single-object by default", k.Encoding, k.UsesRegistry())
	}
	r := k.SchemaRegistry
	if r.SubjectStrategy != topology.SubjectTopic || r.Timeout.D != 10*time.Second || r.Password != pw {
		t.Errorf("defaults: %+v", *r)
	}
	if s := fmt.Sprintf("%v %+v %s", *r, *r, r); strings.Contains(s, pw) {
		t.Errorf("printing the registry settings shows the password: %s", s)
	}
}
