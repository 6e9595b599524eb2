package topology

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Record encodings (kafka.encoding).
const (
	// EncodingSingleObject is Avro's single-object encoding: 0xC3 0x01, the
	// schema's 8-byte fingerprint, the body.
	EncodingSingleObject = "single-object"
	// EncodingRegistry is the schema registry's framing (the Confluent wire
	// format): 0x00, the schema's 4-byte registry id, the body.
	EncodingRegistry = "registry"
)

// Subject naming strategies (kafka.schema_registry.subject_strategy), as
// the Confluent serializers name them.
const (
	// SubjectTopic is TopicNameStrategy, <topic>-value. The results topic
	// holds three kinds of record; a registry that checks compatibility
	// refuses the second under one subject: use topic_record there, or
	// compatibility NONE for <flow>.results-value.
	SubjectTopic = "topic"
	// SubjectRecord is RecordNameStrategy: the record's full name.
	SubjectRecord = "record"
	// SubjectTopicRecord is TopicRecordNameStrategy: <topic>-<full name>.
	SubjectTopicRecord = "topic_record"
)

// DefaultRegistryTimeout bounds each request to the schema registry.
const DefaultRegistryTimeout = 10 * time.Second

// SchemaRegistry configures the schema registry. `topics create` registers
// the schemas of every topic's records; the roles look up the ids (they
// need no right to register) and fetch the schema of any id they read and
// do not know. Messages and String never show the password.
type SchemaRegistry struct {
	// URL is the base of the Confluent Schema Registry API, e.g.
	// http://registry:8081 (Apicurio: http://host:8080/apis/ccompat/v6).
	// Required. Credentials go in username and password, not here.
	URL string `yaml:"url"`
	// Username and Password authenticate with HTTP basic authentication
	// (both or neither); the password is best given as ${ENV_VAR}.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// SubjectStrategy is topic (default: <topic>-value), record (the
	// record's full name) or topic_record (<topic>-<full name>).
	SubjectStrategy string `yaml:"subject_strategy"`
	// Timeout bounds each request to the registry. Default 10s.
	Timeout Duration `yaml:"timeout"`
}

// String describes s without its password.
func (s SchemaRegistry) String() string {
	pw := "unset"
	if s.Password != "" {
		pw = "REDACTED"
	}
	return fmt.Sprintf("{URL:%s Username:%s Password:%s SubjectStrategy:%s Timeout:%s}", RedactURL(s.URL), s.Username, pw, s.SubjectStrategy, s.Timeout)
}

// UsesRegistry reports whether the roles write the schema registry's
// framing.
func (k *Kafka) UsesRegistry() bool { return k.Encoding == EncodingRegistry }

func (k *Kafka) setRegistryDefaults() {
	if k.Encoding == "" {
		k.Encoding = EncodingSingleObject
	}
	if r := k.SchemaRegistry; r != nil {
		if r.SubjectStrategy == "" {
			r.SubjectStrategy = SubjectTopic
		}
		orDefault(&r.Timeout.D, DefaultRegistryTimeout)
	}
}

func (k *Kafka) validateRegistry(ps *problems) {
	encodings := []string{EncodingSingleObject, EncodingRegistry}
	if !slices.Contains(encodings, k.Encoding) {
		ps.add("kafka.encoding", "unknown encoding %q (one of %s)", k.Encoding, strings.Join(encodings, ", "))
	}
	r := k.SchemaRegistry
	if r == nil {
		if k.Encoding == EncodingRegistry {
			ps.add("kafka.encoding", "registry needs kafka.schema_registry")
		}
		return
	}
	const path = "kafka.schema_registry"
	if r.URL == "" {
		ps.add(path+".url", "required with schema_registry")
	} else if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.add(path+".url", "want http(s)://host[:port][/path], have %s", RedactURL(r.URL))
	} else if u.User != nil {
		ps.add(path+".url", "give the credentials as username and password, not in the URL")
	}
	if (r.Username == "") != (r.Password == "") {
		ps.add(path+".password", "username and password go together (the password best written as ${ENV_VAR})")
	}
	strategies := []string{SubjectTopic, SubjectRecord, SubjectTopicRecord}
	if !slices.Contains(strategies, r.SubjectStrategy) {
		ps.add(path+".subject_strategy", "unknown strategy %q (one of %s)", r.SubjectStrategy, strings.Join(strategies, ", "))
	}
	if r.Timeout.D < 0 {
		ps.add(path+".timeout", "must not be negative")
	}
}
