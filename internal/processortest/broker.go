// Package processortest holds what the tests of scattergather share: the
// brokers they run against (the real one named by SG_KAFKA_BROKERS, one
// started by testcontainers-go where a Docker engine answers, or the
// in-process kfake for fast tests), topologies with unique names, and a
// pipeline harness that reads what a read_committed consumer sees.
package processortest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Environment variables of the integration tests.
const (
	// EnvBrokers holds the comma-separated seed brokers of a real Kafka
	// broker, e.g. 127.0.0.1:9092 (scripts/kafka.sh start prints it).
	EnvBrokers = "SG_KAFKA_BROKERS"
	// EnvRequire, when set, makes an integration test fail instead of
	// skipping when no real broker is available. CI sets it.
	EnvRequire = "SG_REQUIRE_INTEGRATION"
)

// Brokers returns the seed brokers of a real Kafka broker for an
// integration test: SG_KAFKA_BROKERS, else a container started with
// testcontainers-go when a Docker engine answers; otherwise the test skips
// (or fails, with SG_REQUIRE_INTEGRATION set) saying how to run it.
func Brokers(t testing.TB) []string {
	t.Helper()
	if v := os.Getenv(EnvBrokers); v != "" {
		return strings.Split(v, ",")
	}
	if seeds, err := containerBroker(t); err == nil {
		return seeds
	} else if os.Getenv(EnvRequire) != "" {
		t.Fatalf("integration test needs a real Kafka broker and %s is set: set %s (scripts/kafka.sh start) — no container either: %v", EnvRequire, EnvBrokers, err)
	} else {
		t.Skipf("integration test: no real Kafka broker (%v); run `scripts/kafka.sh start` and set %s=127.0.0.1:9092", err, EnvBrokers)
	}
	return nil
}

// Fake starts an in-process kfake cluster for a fast test and returns its
// seed brokers. kfake is a fake: no correctness claim rests on it alone.
func Fake(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Unique returns prefix with a random suffix, for topic, flow and group
// names that no other test or run shares.
func Unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}
