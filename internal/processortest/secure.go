package processortest

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/topology"
)

// Environment variables of the integration tests against a broker's
// SASL_SSL listener. `SG_KAFKA_SECURE=1 scripts/kafka.sh start` prints
// their values (KAFKA_SECURE_BOOTSTRAP, KAFKA_CA, ...), and scripts/test.sh
// exports them.
const (
	// EnvSecureBrokers holds the comma-separated seed brokers of the
	// SASL_SSL listener, e.g. 127.0.0.1:9094.
	EnvSecureBrokers = "SG_KAFKA_SECURE_BROKERS"
	// EnvCA is the PEM file of the CA that signed the broker's certificate.
	EnvCA = "SG_KAFKA_CA"
	// EnvClientCert and EnvClientKey are the PEM client certificate and key
	// that the listener (ssl.client.auth=required) accepts.
	EnvClientCert = "SG_KAFKA_CLIENT_CERT"
	EnvClientKey  = "SG_KAFKA_CLIENT_KEY"
	// EnvUntrustedCA is the PEM file of a CA that signed nothing the broker
	// shows.
	EnvUntrustedCA = "SG_KAFKA_UNTRUSTED_CA"
	// EnvSASLMechanism is the SASL mechanism of the user; default
	// SCRAM-SHA-256.
	EnvSASLMechanism = "SG_KAFKA_SASL_MECHANISM"
	// EnvSASLUser and EnvSASLPassword are the SASL user's credentials.
	EnvSASLUser     = "SG_KAFKA_SASL_USER"
	EnvSASLPassword = "SG_KAFKA_SASL_PASSWORD"
)

// SecureInfo describes a broker's SASL_SSL listener that requires a
// client certificate.
type SecureInfo struct {
	Brokers         []string
	CAFile          string // the CA of the broker's certificate
	CertFile        string // a client certificate the broker accepts
	KeyFile         string // its key
	UntrustedCAFile string // a CA that did not sign the broker's certificate
	Mechanism       string // SASL mechanism, e.g. SCRAM-SHA-256
	User            string
	Password        string
}

// SecureBroker returns the SASL_SSL listener named by the SG_KAFKA_SECURE_*
// and related environment variables for an integration test. Without them
// the test skips, or fails with SG_REQUIRE_INTEGRATION set, saying how to
// start one.
func SecureBroker(t testing.TB) SecureInfo {
	t.Helper()
	s := SecureInfo{Mechanism: topology.SASLScramSHA256}
	vars := []struct {
		name string
		dst  *string
	}{
		{EnvCA, &s.CAFile}, {EnvClientCert, &s.CertFile}, {EnvClientKey, &s.KeyFile},
		{EnvUntrustedCA, &s.UntrustedCAFile}, {EnvSASLUser, &s.User}, {EnvSASLPassword, &s.Password},
	}
	var missing []string
	brokers := os.Getenv(EnvSecureBrokers)
	if brokers == "" {
		missing = append(missing, EnvSecureBrokers)
	}
	for _, v := range vars {
		if *v.dst = os.Getenv(v.name); *v.dst == "" {
			missing = append(missing, v.name)
		}
	}
	if m := os.Getenv(EnvSASLMechanism); m != "" {
		s.Mechanism = m
	}
	if len(missing) > 0 {
		const how = "start one with `SG_KAFKA_SECURE=1 scripts/kafka.sh start` and set the variables from what it prints (scripts/test.sh does)"
		if os.Getenv(EnvRequire) != "" {
			t.Fatalf("integration test needs a broker's SASL_SSL listener and %s is set, but %s not set: %s",
				EnvRequire, strings.Join(missing, ", "), how)
		}
		t.Skipf("integration test: no SASL_SSL listener (%s not set): %s", strings.Join(missing, ", "), how)
	}
	s.Brokers = strings.Split(brokers, ",")
	return s
}

// KafkaTopology parses a one-flow topology like Topology, with kafka as
// the body of its kafka section (unindented YAML; a unique group_prefix is
// added). Values may use ${VAR}, read from the environment. It fails the
// test when the topology is invalid.
func KafkaTopology(t testing.TB, kafka, flowBody string) (*topology.Topology, *topology.Flow) {
	t.Helper()
	name := Unique("t")
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  group_prefix: %s\n", name)
	for _, line := range strings.Split(strings.TrimSpace(kafka), "\n") {
		b.WriteString("  " + line + "\n")
	}
	fmt.Fprintf(&b, "flows:\n  - name: %s\n", name)
	for _, line := range strings.Split(strings.TrimSpace(flowBody), "\n") {
		b.WriteString("    " + line + "\n")
	}
	topo, err := topology.Parse(name+".yaml", []byte(b.String()), os.LookupEnv)
	if err != nil {
		t.Fatalf("topology:\n%s\n%v", b.String(), err)
	}
	return topo, topo.Flows[0]
}
