#!/usr/bin/env bash
# Run a real three-node Apache Kafka cluster (KRaft) on 127.0.0.1, without
# Docker: three combined broker+controller nodes that form a controller
# quorum of three, each with its own ports, data dir and JVM. The jars are
# the ones scripts/kafka.sh fetches (same pom, same cache, same version).
#
# Usage: scripts/kafka-cluster.sh {start|stop|status|clean|kill N|stop-node N|start-node N|version}
#
#   start         fetch the jars if needed, write each node's config, format
#                 each node's storage once (one cluster id, the same static
#                 quorum), start the nodes that are not running and wait until
#                 every client port is open; prints KEY=VALUE lines
#                 (CLUSTER_BOOTSTRAP=..., NODE_IDS=1 2 3, NODE_<id>_PORT=...)
#   stop          SIGTERM every node, wait up to 30 s each, then SIGKILL
#   status        prints KEY=VALUE lines (NODE_<id>_PID empty for a node that
#                 is down); exits 0 if all nodes run, 3 if none, 4 if some
#   clean         stop and delete the cluster dir
#   kill N        SIGKILL node N at once (a crash: no controlled shutdown)
#   stop-node N   SIGTERM node N and wait for it to exit (controlled shutdown)
#   start-node N  start node N again on its data and wait for its client port
#                 (needs a controller quorum: at least one other node up)
#   version       print the pinned Kafka version
#
# Environment:
#   SG_CLUSTER_BASE_PORT   node N serves clients on BASE+2(N-1) and its
#                          controller on BASE+2(N-1)+1 (default 29092:
#                          29092..29097)
#   SG_CLUSTER_DIR         cluster dir; node N lives in $SG_CLUSTER_DIR/node-N
#                          (default /tmp/scattergather-kafka-cluster)
#   SG_CLUSTER_HEAP        max heap of each node (default 384m)
#   SG_KAFKA_HOME          jar cache, as for scripts/kafka.sh
#   SG_KAFKA_START_TIMEOUT seconds to wait for client ports (default 120)
#
# Replication: topics default to replication factor 3 and
# min.insync.replicas=2; the internal topics (__consumer_offsets,
# __transaction_state, share state) are replicated 3 with min ISR 2. So one
# node can be down and every write acknowledged with acks=all still lands on
# two; with two down, writes to partitions that lost their ISR fail with
# NOT_ENOUGH_REPLICAS and producers retry until a node returns.
#
# The quorum is static (controller.quorum.voters with all three nodes), so
# the storage is formatted without --standalone or --initial-controllers.
# Brokers heartbeat every 500 ms and are fenced after 3 s of silence: a
# killed node's partitions get a new leader within a few seconds.
#
# Node dir: server.properties, data/ (log.dirs), kafka.pid, server.log,
# kafka.out (the JVM's stdout/stderr), format.log. Commands that change the
# cluster hold a flock on $SG_CLUSTER_DIR.lock.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_DIR="$SCRIPT_DIR/kafka"
POM="$CONF_DIR/pom.xml"
LOG4J_CONF="$CONF_DIR/log4j2.properties"

die() { echo "kafka-cluster.sh: error: $*" >&2; exit 1; }
info() { echo "kafka-cluster.sh: $*" >&2; }

[[ -f "$POM" ]] || die "missing $POM"
[[ -f "$LOG4J_CONF" ]] || die "missing $LOG4J_CONF"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$POM" | head -n 1)"
[[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> in $POM"

HOST=127.0.0.1
NODES=(1 2 3)
BASE_PORT="${SG_CLUSTER_BASE_PORT:-29092}"
START_TIMEOUT="${SG_KAFKA_START_TIMEOUT:-120}"
HEAP="${SG_CLUSTER_HEAP:-384m}"
STOP_TIMEOUT=30
for v in BASE_PORT START_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
((BASE_PORT >= 1024 && BASE_PORT <= 65530)) || die "SG_CLUSTER_BASE_PORT must be within 1024..65530"
[[ "$HEAP" =~ ^[0-9]+[mMgG]$ ]] || die "SG_CLUSTER_HEAP must look like 384m, got '$HEAP'"

KAFKA_HOME="${SG_KAFKA_HOME:-${HOME:-/tmp}/.cache/scattergather/kafka-$KAFKA_VERSION}"
LIBS="$KAFKA_HOME/libs"

CLUSTER_DIR="${SG_CLUSTER_DIR:-/tmp/scattergather-kafka-cluster}"
[[ "$CLUSTER_DIR" = /* ]] || CLUSTER_DIR="$PWD/$CLUSTER_DIR"
LOCK_FILE="$CLUSTER_DIR.lock"
ID_FILE="$CLUSTER_DIR/cluster.id"
PORT_FILE="$CLUSTER_DIR/base.port"

client_port() { echo $((BASE_PORT + 2 * ($1 - 1))); }
controller_port() { echo $((BASE_PORT + 2 * ($1 - 1) + 1)); }
node_dir() { echo "$CLUSTER_DIR/node-$1"; }
props() { echo "$(node_dir "$1")/server.properties"; }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }

check_node() {
  local n
  for n in "${NODES[@]}"; do
    [[ "$1" == "$n" ]] && return 0
  done
  die "no node '$1' (nodes: ${NODES[*]})"
}

need_java() {
  command -v java >/dev/null 2>&1 ||
    die "java not found on PATH: install a JDK/JRE 17+ (e.g. apt-get install openjdk-17-jre-headless)"
}

lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$1")"
  eval "exec $2>>\"\$1\""
  flock "$2"
}

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

exists() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# alive PID N: exists and is node N's broker (not a recycled pid).
alive() {
  exists "$1" || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $(props "$2")"
}

read_pid() {
  local f
  f="$(pid_file "$1")"
  [[ -f "$f" ]] && cat "$f" 2>/dev/null || true
}

# running_pid N: prints node N's pid if it runs.
running_pid() {
  local pid
  pid="$(read_pid "$1")"
  if alive "$pid" "$1"; then
    echo "$pid"
    return 0
  fi
  return 1
}

bootstrap() {
  local n list=()
  for n in "${NODES[@]}"; do
    list+=("$HOST:$(client_port "$n")")
  done
  (IFS=,; echo "${list[*]}")
}

voters() {
  local n list=()
  for n in "${NODES[@]}"; do
    list+=("$n@$HOST:$(controller_port "$n")")
  done
  (IFS=,; echo "${list[*]}")
}

print_info() {
  local n pid
  echo "CLUSTER_BOOTSTRAP=$(bootstrap)"
  echo "CLUSTER_DIR=$CLUSTER_DIR"
  echo "KAFKA_VERSION=$KAFKA_VERSION"
  echo "NODE_IDS=${NODES[*]}"
  for n in "${NODES[@]}"; do
    pid="$(running_pid "$n" || true)"
    echo "NODE_${n}_PORT=$(client_port "$n")"
    echo "NODE_${n}_CONTROLLER_PORT=$(controller_port "$n")"
    echo "NODE_${n}_PID=$pid"
    echo "NODE_${n}_DIR=$(node_dir "$n")"
  done
}

show_logs() {
  local f
  for f in "$(node_dir "$1")/kafka.out" "$(node_dir "$1")/server.log"; do
    if [[ -s "$f" ]]; then
      echo "----- last 40 lines of $f -----" >&2
      tail -n 40 "$f" >&2
    fi
  done
}

write_props() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  cat >"$(props "$n")" <<EOF
# Written by scripts/kafka-cluster.sh: node $n of a three-node KRaft cluster,
# broker + controller.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://$HOST:$(client_port "$n"),CONTROLLER://$HOST:$(controller_port "$n")
advertised.listeners=PLAINTEXT://$HOST:$(client_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data

num.partitions=1
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=false
unclean.leader.election.enable=false

offsets.topic.replication.factor=3
offsets.topic.min.isr=2
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
# A killed node is fenced, and its partitions led elsewhere, after 3 s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# A follower that stops fetching leaves the ISR after 10 s (default 30 s).
replica.lag.time.max.ms=10000
# Small machine: few threads per node.
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
background.threads=4
log.cleaner.threads=1
EOF
}

format_node() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  [[ -f "$dir/data/meta.properties" ]] && return 0
  info "formatting node $n ($dir/data, cluster id $(cat "$ID_FILE"))"
  if ! java -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J_CONF" \
      -Dkafka.logs.dir="$dir" \
      kafka.tools.StorageTool format -t "$(cat "$ID_FILE")" -c "$(props "$n")" \
      </dev/null >"$dir/format.log" 2>&1 8>&- 9>&-; then
    cat "$dir/format.log" >&2
    die "formatting node $n failed"
  fi
}

# prepare: the cluster id, each node's config and formatted storage, once.
prepare() {
  mkdir -p "$CLUSTER_DIR"
  if [[ -f "$PORT_FILE" && "$(cat "$PORT_FILE")" != "$BASE_PORT" ]]; then
    die "$CLUSTER_DIR was formatted with base port $(cat "$PORT_FILE"), not $BASE_PORT (the quorum's voters are tied to it): run 'scripts/kafka-cluster.sh clean' or use another SG_CLUSTER_DIR"
  fi
  if [[ ! -f "$ID_FILE" ]]; then
    local id=""
    while [[ -z "$id" || "$id" == -* ]]; do
      id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    echo "$id" >"$ID_FILE"
    echo "$BASE_PORT" >"$PORT_FILE"
  fi
  local n
  for n in "${NODES[@]}"; do
    mkdir -p "$(node_dir "$n")/data"
    write_props "$n"
    format_node "$n"
  done
}

# launch N: start node N's JVM in the background (no waiting).
launch() {
  local n="$1" dir pid p
  dir="$(node_dir "$n")"
  for p in "$(client_port "$n")" "$(controller_port "$n")"; do
    if port_open "$p"; then
      die "$HOST:$p (node $n) is already in use by another process; stop it or set SG_CLUSTER_BASE_PORT"
    fi
  done
  echo "===== $(date '+%Y-%m-%d %H:%M:%S') kafka-cluster.sh start node $n =====" >>"$dir/kafka.out"
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  "${launcher[@]}" java -Xms128m -Xmx"$HEAP" -XX:+UseSerialGC \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$dir" \
    -cp "$LIBS/*" kafka.Kafka "$(props "$n")" </dev/null >>"$dir/kafka.out" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$(pid_file "$n")"
}

# wait_up N...: wait until each node's client port is open.
wait_up() {
  local deadline=$((SECONDS + START_TIMEOUT)) n pid
  for n in "$@"; do
    pid="$(read_pid "$n")"
    until port_open "$(client_port "$n")"; do
      if ! exists "$pid"; then
        show_logs "$n"
        rm -f "$(pid_file "$n")"
        die "node $n exited during startup"
      fi
      if ((SECONDS >= deadline)); then
        show_logs "$n"
        die "node $n did not open its client port within $START_TIMEOUT s (still running: stop or clean the cluster)"
      fi
      sleep 0.5
    done
  done
}

cmd_start() {
  local n started=() start=$SECONDS
  for n in "${NODES[@]}"; do
    if running_pid "$n" >/dev/null; then
      started+=("$n")
    fi
  done
  if ((${#started[@]} == ${#NODES[@]})); then
    info "already running"
    print_info
    return 0
  fi
  "$SCRIPT_DIR/kafka.sh" fetch
  need_java
  prepare
  local todo=()
  for n in "${NODES[@]}"; do
    if ! running_pid "$n" >/dev/null; then
      launch "$n"
      todo+=("$n")
    fi
  done
  info "starting Kafka $KAFKA_VERSION nodes ${todo[*]} on $(bootstrap) (data in $CLUSTER_DIR)"
  wait_up "${NODES[@]}"
  info "started in $((SECONDS - start)) s"
  print_info
}

cmd_start_node() {
  local n="$1" pid start=$SECONDS
  if pid="$(running_pid "$n")"; then
    info "node $n already running (pid $pid)"
    print_info
    return 0
  fi
  [[ -f "$(node_dir "$n")/data/meta.properties" ]] || die "node $n was never formatted: run 'scripts/kafka-cluster.sh start' first"
  need_java
  write_props "$n"
  launch "$n"
  wait_up "$n"
  info "node $n started in $((SECONDS - start)) s (pid $(read_pid "$n"))"
  print_info
}

cmd_kill() {
  local n="$1" pid
  if ! pid="$(running_pid "$n")"; then
    rm -f "$(pid_file "$n")"
    info "node $n not running"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  while exists "$pid"; do sleep 0.1; done
  rm -f "$(pid_file "$n")"
  info "node $n killed (SIGKILL, pid $pid)"
}

cmd_stop_node() {
  local n="$1" pid
  if ! pid="$(running_pid "$n")"; then
    rm -f "$(pid_file "$n")"
    info "node $n not running"
    return 0
  fi
  info "stopping node $n, pid $pid (SIGTERM, up to $STOP_TIMEOUT s)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" "$n" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if alive "$pid" "$n"; then
    info "node $n still running after $STOP_TIMEOUT s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while exists "$pid"; do sleep 0.1; done
  fi
  rm -f "$(pid_file "$n")"
  info "node $n stopped"
}

cmd_stop() {
  # SIGTERM to all first, so the last controllers do not wait for each
  # other's controlled shutdown one by one.
  local n pid pids=()
  for n in "${NODES[@]}"; do
    if pid="$(running_pid "$n")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$n:$pid")
    fi
  done
  local deadline=$((SECONDS + STOP_TIMEOUT)) e
  for e in "${pids[@]}"; do
    n="${e%%:*}" pid="${e#*:}"
    while alive "$pid" "$n" && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if alive "$pid" "$n"; then
      info "node $n still running: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while exists "$pid"; do sleep 0.1; done
    fi
  done
  for n in "${NODES[@]}"; do
    rm -f "$(pid_file "$n")"
  done
  info "stopped"
}

cmd_status() {
  local n up=0
  for n in "${NODES[@]}"; do
    if running_pid "$n" >/dev/null; then
      up=$((up + 1))
    fi
  done
  info "$up of ${#NODES[@]} nodes running"
  print_info
  ((up == ${#NODES[@]})) && return 0
  ((up == 0)) && return 3
  return 4
}

cmd_clean() {
  cmd_stop
  case "$CLUSTER_DIR" in
    / | "" | "${HOME:-/}" | /tmp | /root | /home) die "refusing to delete '$CLUSTER_DIR'" ;;
  esac
  rm -rf -- "$CLUSTER_DIR"
  info "deleted $CLUSTER_DIR"
}

usage() {
  sed -n '7,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

node_arg() {
  [[ -n "${1:-}" ]] || { usage; exit 2; }
  check_node "$1"
}

case "${1:-}" in
  start) lock "$LOCK_FILE" 9; cmd_start ;;
  stop) lock "$LOCK_FILE" 9; cmd_stop ;;
  status) cmd_status ;;
  clean) lock "$LOCK_FILE" 9; cmd_clean ;;
  kill) node_arg "${2:-}"; cmd_kill "$2" ;;
  stop-node) node_arg "${2:-}"; lock "$LOCK_FILE" 9; cmd_stop_node "$2" ;;
  start-node) node_arg "${2:-}"; lock "$LOCK_FILE" 9; cmd_start_node "$2" ;;
  version) echo "$KAFKA_VERSION" ;;
  -h | --help | help) usage ;;
  *) usage; exit 2 ;;
esac
