#!/usr/bin/env bash
# Runs every test, unit and integration, against a real Apache Kafka broker:
# starts a throw-away broker (scripts/kafka.sh fetches it from Maven Central
# the first time) with a PLAINTEXT listener and a SASL_SSL one (TLS with a
# client certificate required, then SCRAM), runs go vet and go test -race
# with the addresses, credentials and certificate files of both, stops the
# broker, and fails if any integration test was skipped or none ran.
#
# Usage: scripts/test.sh [go test flags, e.g. -run Pipeline]
# Environment: SG_TEST_KAFKA_PORT (default 19092; the controller takes the
# next port, SASL_SSL the one after) and SG_TEST_KAFKA_DIR (default
# /tmp/scattergather-test-kafka) keep it apart from a broker you run
# yourself on 9092.
#
# Then it stops that broker, starts a three-node cluster
# (scripts/kafka-cluster.sh; SG_TEST_CLUSTER_BASE_PORT, default 19192, and
# SG_TEST_CLUSTER_DIR, default /tmp/scattergather-test-cluster) and runs the
# cluster fault suite, test/cluster, against it, and then its two-minute
# chaos soak.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v go >/dev/null || { echo "test.sh: go is not installed" >&2; exit 1; }

export SG_KAFKA_PORT="${SG_TEST_KAFKA_PORT:-19092}"
export SG_KAFKA_CONTROLLER_PORT="$((SG_KAFKA_PORT + 1))"
export SG_KAFKA_SASL_PORT="$((SG_KAFKA_PORT + 2))"
export SG_KAFKA_DIR="${SG_TEST_KAFKA_DIR:-/tmp/scattergather-test-kafka}"
# Secure mode: kafka.sh makes the CA, the certificates and the SCRAM user,
# and a `kafka.sh restart` (the fault tests) keeps the listener.
export SG_KAFKA_SECURE=1
unset SG_KAFKA_SASL_USER SG_KAFKA_SASL_PASSWORD # kafka.sh picks them

export SG_CLUSTER_BASE_PORT="${SG_TEST_CLUSTER_BASE_PORT:-19192}"
export SG_CLUSTER_DIR="${SG_TEST_CLUSTER_DIR:-/tmp/scattergather-test-cluster}"

scripts/kafka.sh clean >/dev/null
scripts/kafka-cluster.sh clean >/dev/null 2>&1
trap 'scripts/kafka.sh clean >/dev/null 2>&1 || true; scripts/kafka-cluster.sh clean >/dev/null 2>&1 || true' EXIT
info="$(scripts/kafka.sh start)"
# kv KEY: the value of KEY=VALUE in what kafka.sh start printed.
kv() {
  local v
  v="$(sed -n "s/^$1=//p" <<<"$info")"
  [[ -n "$v" ]] || { echo "test.sh: scripts/kafka.sh start printed no $1" >&2; exit 1; }
  echo "$v"
}
# The variables processortest.SecureBroker reads, from kafka.sh's keys.
for pair in SG_KAFKA_SECURE_BROKERS=KAFKA_SECURE_BOOTSTRAP SG_KAFKA_CA=KAFKA_CA \
  SG_KAFKA_CLIENT_CERT=KAFKA_CLIENT_CERT SG_KAFKA_CLIENT_KEY=KAFKA_CLIENT_KEY \
  SG_KAFKA_UNTRUSTED_CA=KAFKA_UNTRUSTED_CA SG_KAFKA_SASL_MECHANISM=KAFKA_SASL_MECHANISM \
  SG_KAFKA_SASL_USER=KAFKA_SASL_USER SG_KAFKA_SASL_PASSWORD=KAFKA_SASL_PASSWORD; do
  value="$(kv "${pair#*=}")" # a plain assignment, so that set -e sees kv fail
  export "${pair%%=*}=$value"
done
echo "test.sh: Kafka $(scripts/kafka.sh version) on 127.0.0.1:$SG_KAFKA_PORT (PLAINTEXT) and $SG_KAFKA_SECURE_BROKERS (SASL_SSL, $SG_KAFKA_SASL_MECHANISM, client certificate required)"

echo "test.sh: go vet ./..."
go vet ./...

log="$(mktemp)"
echo "test.sh: go test -race ./... (log: $log)"
set +e
# The fault suite stops and restarts this broker (SG_KAFKA_SCRIPT): it runs
# after the other packages, not beside them, whose tests would see the
# broker vanish.
export SG_KAFKA_BROKERS="127.0.0.1:$SG_KAFKA_PORT" SG_REQUIRE_INTEGRATION=1
others=$(go list ./... | grep -v -E '/test/(faults|cluster)$')
go test -race -count=1 -timeout 25m -v "$@" $others >"$log" 2>&1
rc=$?
SG_KAFKA_SCRIPT="$PWD/scripts/kafka.sh" go test -race -count=1 -timeout 15m -v "$@" ./test/faults >>"$log" 2>&1
rc2=$?
[[ $rc -ne 0 ]] || rc=$rc2
# The cluster suite on three nodes of their own, once the single broker is
# gone (the machine's cores go to the cluster).
scripts/kafka.sh clean >/dev/null 2>&1
if cluster_info="$(scripts/kafka-cluster.sh start)"; then
  echo "test.sh: three-node cluster on $(sed -n 's/^CLUSTER_BOOTSTRAP=//p' <<<"$cluster_info")"
  SG_CLUSTER_SCRIPT="$PWD/scripts/kafka-cluster.sh" go test -race -count=1 -timeout 15m -v -skip '^TestIntegrationClusterSoak$' "$@" ./test/cluster >>"$log" 2>&1
  rc2=$?
  # Then the chaos soak on the same cluster: two minutes of load under a
  # random schedule of faults (its seed is in the log).
  SG_CLUSTER_SCRIPT="$PWD/scripts/kafka-cluster.sh" go test -race -count=1 -timeout 10m -v -run '^TestIntegrationClusterSoak$' "$@" ./test/cluster -soak.duration=2m >>"$log" 2>&1
  rc3=$?
  [[ $rc2 -ne 0 ]] || rc2=$rc3
else
  echo "test.sh: scripts/kafka-cluster.sh start failed" >&2
  rc2=1
fi
scripts/kafka-cluster.sh clean >/dev/null 2>&1
[[ $rc -ne 0 ]] || rc=$rc2
set -e
grep -E '^(ok|FAIL|---|panic:|\s+\S+_test\.go:[0-9]+:)' "$log" | grep -v -E '^\s*--- PASS' || true

passed=$(grep -c -E '^\s*--- PASS: TestIntegration' "$log" || true)
skipped=$(grep -c -E '^\s*--- SKIP: TestIntegration' "$log" || true)
echo "test.sh: integration tests passed: $passed, skipped: $skipped"
if [[ $rc -ne 0 ]]; then
  echo "test.sh: FAIL (go test exit $rc)" >&2
  exit "$rc"
fi
if [[ $skipped -ne 0 || $passed -eq 0 ]]; then
  echo "test.sh: FAIL: integration tests must run against the real broker" >&2
  exit 1
fi
# Every decoder under the fuzzer for a bounded time (the seed corpus in
# testdata/fuzz runs with the tests above as well).
if [[ -z "${SG_SKIP_FUZZ:-}" && $# -eq 0 ]]; then
  for target in "FuzzDecode ./schemas" "FuzzParse ./processor/topology" "FuzzParse ./processor/payload" "FuzzParseCommitMeta ./processor/gather"; do
    set -- $target
    echo "test.sh: go test -fuzz=$1 -fuzztime=${SG_FUZZTIME:-10s} $2"
    go test -run='^$' -fuzz="^$1\$" -fuzztime="${SG_FUZZTIME:-10s}" "$2" >"$log.fuzz" 2>&1 || { tail -30 "$log.fuzz"; echo "test.sh: FAIL: fuzzing $1 in $2" >&2; exit 1; }
  done
fi
scripts/check-deploy.sh || { echo "test.sh: FAIL: deploy/ (Prometheus rules and configuration)" >&2; exit 1; }
echo "test.sh: PASS"
