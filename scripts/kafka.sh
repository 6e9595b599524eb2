#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft, combined broker+controller)
# on 127.0.0.1, without Docker: the broker's jars come from Maven Central via
# Maven (scripts/kafka/pom.xml), and it runs on the local java.
#
# Usage: scripts/kafka.sh {fetch|start|stop|status|restart|clean|version}
#
#   fetch    download the jars once into $SG_KAFKA_HOME/libs (skipped if present)
#   start    fetch if needed, write server.properties, format storage once,
#            start the broker in the background and wait for the client port;
#            prints KEY=VALUE lines (KAFKA_BOOTSTRAP=127.0.0.1:9092, ...) on stdout
#   stop     SIGTERM, wait up to 30 s, then SIGKILL (no-op if not running)
#   status   prints KEY=VALUE lines and exits 0 if running, exits 3 if not
#   restart  stop then start, keeping the data (topics, offsets, transactions)
#   clean    stop and delete the data dir
#   version  print the pinned Kafka version
#
# Environment:
#   SG_KAFKA_HOME             jar cache (default ~/.cache/scattergather/kafka-<version>)
#   SG_KAFKA_DIR              data dir: config, logs, pid, partitions
#                             (default /tmp/scattergather-kafka)
#   SG_KAFKA_PORT             client (PLAINTEXT) port (default 9092)
#   SG_KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093)
#   SG_KAFKA_START_TIMEOUT    seconds to wait for the client port (default 90)
#
# Version: the pin is <kafka.version> in scripts/kafka/pom.xml. 4.4.0, the
# newest on Maven Central, is used: it fetched, formatted, started and served
# clients (admin, transactional producer, read_committed consumer) here, so no
# fallback to an older 4.x was needed. Kafka 4.4.0 depends on slf4j-api 1.7.36,
# hence the log4j-slf4j-impl (SLF4J 1.x) binding in the pom. Storage is
# formatted with the version's defaults (metadata.version 4.4-IV2,
# transaction.version 2).
#
# Data dir: server.properties, data/ (log.dirs), kafka.pid, server.log
# (log4j, INFO), kafka.out (the JVM's stdout/stderr: WARN and above, crashes),
# format.log (storage format output). start/stop/restart/clean hold a flock on
# $SG_KAFKA_DIR.lock, so concurrent callers do not race.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_DIR="$SCRIPT_DIR/kafka"
POM="$CONF_DIR/pom.xml"
LOG4J_CONF="$CONF_DIR/log4j2.properties"

die() { echo "kafka.sh: error: $*" >&2; exit 1; }
info() { echo "kafka.sh: $*" >&2; }

[[ -f "$POM" ]] || die "missing $POM"
[[ -f "$LOG4J_CONF" ]] || die "missing $LOG4J_CONF"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$POM" | head -n 1)"
[[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> in $POM"

HOST=127.0.0.1
PORT="${SG_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${SG_KAFKA_CONTROLLER_PORT:-9093}"
START_TIMEOUT="${SG_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30
for v in PORT CONTROLLER_PORT START_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
((START_TIMEOUT >= 1)) || die "SG_KAFKA_START_TIMEOUT must be at least 1"
[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "SG_KAFKA_PORT and SG_KAFKA_CONTROLLER_PORT must differ"

KAFKA_HOME="${SG_KAFKA_HOME:-${HOME:-/tmp}/.cache/scattergather/kafka-$KAFKA_VERSION}"
LIBS="$KAFKA_HOME/libs"
FETCH_STAMP="$KAFKA_HOME/.fetched"

DATA_DIR="${SG_KAFKA_DIR:-/tmp/scattergather-kafka}"
[[ "$DATA_DIR" = /* ]] || DATA_DIR="$PWD/$DATA_DIR"
PROPS="$DATA_DIR/server.properties"
LOG_DIRS="$DATA_DIR/data"
PID_FILE="$DATA_DIR/kafka.pid"
OUT_LOG="$DATA_DIR/kafka.out"
SERVER_LOG="$DATA_DIR/server.log"
FORMAT_LOG="$DATA_DIR/format.log"
CTRL_PORT_FILE="$DATA_DIR/controller.port"
LOCK_FILE="$DATA_DIR.lock"

need_java() {
  command -v java >/dev/null 2>&1 ||
    die "java not found on PATH: install a JDK/JRE 17+ (e.g. apt-get install openjdk-17-jre-headless)"
}

need_mvn() {
  command -v mvn >/dev/null 2>&1 ||
    die "mvn (Apache Maven) not found on PATH: it is needed once to fetch the Kafka jars (e.g. apt-get install maven)"
}

# lock FILE FD: serialise concurrent invocations (e.g. parallel test
# packages all calling start). Children that outlive us must not inherit FD.
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$1")"
  eval "exec $2>>\"\$1\""
  flock "$2"
}

pom_sum() { cksum <"$POM" | awk '{print $1 "-" $2}'; }

fetched() {
  [[ -f "$FETCH_STAMP" && "$(cat "$FETCH_STAMP")" == "$(pom_sum)" ]] &&
    compgen -G "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
}

# fetch: copy kafka_2.13 and the logging jars with all their runtime
# dependencies into $LIBS, once. Re-fetches only if the pom changed.
cmd_fetch() {
  if fetched; then
    info "jars for Kafka $KAFKA_VERSION already in $LIBS"
    return 0
  fi
  need_mvn
  need_java
  lock "$KAFKA_HOME/.lock" 8
  if fetched; then
    info "jars for Kafka $KAFKA_VERSION already in $LIBS"
    return 0
  fi
  local tmp="$KAFKA_HOME/libs.tmp.$$"
  rm -rf "$tmp"
  info "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS ..."
  local start=$SECONDS
  # (sed drops the stray ESC[0m that Maven 3.8 prints even with -B -q.)
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null 2>&1 |
      sed 's/\x1b\[0m//g' >&2; then
    rm -rf "$tmp"
    die "mvn could not fetch the Kafka $KAFKA_VERSION jars (see the output above)"
  fi
  compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null ||
    { rm -rf "$tmp"; die "fetch finished but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  pom_sum >"$FETCH_STAMP"
  info "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - start)) s"
}

# port_open PORT: true if something accepts TCP connections on $HOST:PORT.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# exists PID: the process exists and is not a zombie.
exists() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# alive PID: exists and is our broker (not a recycled pid).
alive() {
  exists "$1" || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $PROPS"
}

read_pid() {
  [[ -f "$PID_FILE" ]] && cat "$PID_FILE" 2>/dev/null || true
}

running_pid() {
  local pid
  pid="$(read_pid)"
  if alive "$pid"; then
    echo "$pid"
    return 0
  fi
  return 1
}

print_info() {
  echo "KAFKA_BOOTSTRAP=$HOST:$PORT"
  echo "KAFKA_CONTROLLER=$HOST:$CONTROLLER_PORT"
  echo "KAFKA_VERSION=$KAFKA_VERSION"
  echo "KAFKA_PID=$1"
  echo "KAFKA_DIR=$DATA_DIR"
  echo "KAFKA_LOG=$SERVER_LOG"
}

show_logs() {
  local f
  for f in "$OUT_LOG" "$SERVER_LOG"; do
    if [[ -s "$f" ]]; then
      echo "----- last 50 lines of $f -----" >&2
      tail -n 50 "$f" >&2
    fi
  done
}

write_props() {
  cat >"$PROPS" <<EOF
# Written by scripts/kafka.sh: single-node KRaft broker + controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$LOG_DIRS

num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false

offsets.topic.replication.factor=1
offsets.topic.min.isr=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Abort timed-out transactions within ~1 s of their timeout (default 10 s).
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
# After a SIGKILL the restarted controller keeps the dead broker's registration
# until its session times out (default 9 s, so a restart took ~13 s).
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
EOF
}

# format: once per data dir, with a fresh cluster id.
format_storage() {
  [[ -f "$LOG_DIRS/meta.properties" ]] && return 0
  local id=""
  # A KRaft cluster id is a base64url UUID of 16 bytes (22 chars); one that
  # starts with '-' would be read by the storage tool as an option.
  while [[ -z "$id" || "$id" == -* ]]; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  info "formatting $LOG_DIRS (cluster id $id)"
  if ! java -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J_CONF" \
      -Dkafka.logs.dir="$DATA_DIR" \
      kafka.tools.StorageTool format -t "$id" -c "$PROPS" --standalone \
      </dev/null >"$FORMAT_LOG" 2>&1 8>&- 9>&-; then
    cat "$FORMAT_LOG" >&2
    die "formatting storage in $LOG_DIRS failed"
  fi
  echo "$CONTROLLER_PORT" >"$CTRL_PORT_FILE"
}

# The standalone format records the controller's endpoint as the KRaft voter,
# so an existing data dir is tied to its controller port.
check_controller_port() {
  if [[ -f "$LOG_DIRS/meta.properties" && -f "$CTRL_PORT_FILE" &&
    "$(cat "$CTRL_PORT_FILE")" != "$CONTROLLER_PORT" ]]; then
    die "$DATA_DIR was formatted with controller port $(cat "$CTRL_PORT_FILE"), not $CONTROLLER_PORT: run 'scripts/kafka.sh clean' or use another SG_KAFKA_DIR"
  fi
}

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    info "already running (pid $pid)"
    print_info "$pid"
    return 0
  fi
  rm -f "$PID_FILE"
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "$HOST:$p is already in use by another process (another Kafka?); stop it or set SG_KAFKA_PORT / SG_KAFKA_CONTROLLER_PORT"
    fi
  done
  cmd_fetch
  need_java
  mkdir -p "$DATA_DIR" "$LOG_DIRS"
  check_controller_port
  write_props
  format_storage

  local start=$SECONDS
  info "starting Kafka $KAFKA_VERSION on $HOST:$PORT (data in $DATA_DIR)"
  {
    echo "===== $(date '+%Y-%m-%d %H:%M:%S') kafka.sh start ====="
  } >>"$OUT_LOG"
  # Own session (so a caller's Ctrl-C / process group kill does not hit it),
  # stdin from /dev/null and all output to a file, so a caller waiting on our
  # stdout/stderr is not held open by the broker.
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  "${launcher[@]}" java -Xms256m -Xmx512m -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$DATA_DIR" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" </dev/null >>"$OUT_LOG" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local deadline=$((SECONDS + START_TIMEOUT))
  until port_open "$PORT"; do
    # exists, not alive: right after the fork the child is not java yet.
    if ! exists "$pid"; then
      show_logs
      rm -f "$PID_FILE"
      die "the broker exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_logs
      cmd_stop >/dev/null 2>&1 || true
      die "the broker did not open $HOST:$PORT within $START_TIMEOUT s (stopped it)"
    fi
    sleep 0.5
  done
  info "started in $((SECONDS - start)) s (pid $pid)"
  print_info "$pid"
}

cmd_stop() {
  local pid
  pid="$(read_pid)"
  if ! alive "$pid"; then
    rm -f "$PID_FILE"
    info "not running"
    return 0
  fi
  info "stopping pid $pid (SIGTERM, up to $STOP_TIMEOUT s)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.5
  done
  if alive "$pid"; then
    info "still running after $STOP_TIMEOUT s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.2; done
  fi
  rm -f "$PID_FILE"
  info "stopped"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then
      info "running (pid $pid), serving $HOST:$PORT"
    else
      info "running (pid $pid), but $HOST:$PORT is not open (starting or stopping?)"
    fi
    print_info "$pid"
    return 0
  fi
  info "not running"
  return 3
}

cmd_clean() {
  cmd_stop
  case "$DATA_DIR" in
    / | "" | "${HOME:-/}" | /tmp | /root | /home) die "refusing to delete '$DATA_DIR'" ;;
  esac
  rm -rf -- "$DATA_DIR"
  info "deleted $DATA_DIR"
}

usage() {
  sed -n '6,24s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) lock "$LOCK_FILE" 9; cmd_start ;;
  stop) lock "$LOCK_FILE" 9; cmd_stop ;;
  status) cmd_status ;;
  restart) lock "$LOCK_FILE" 9; cmd_stop; cmd_start ;;
  clean) lock "$LOCK_FILE" 9; cmd_clean ;;
  version) echo "$KAFKA_VERSION" ;;
  -h | --help | help) usage ;;
  *) usage; exit 2 ;;
esac
