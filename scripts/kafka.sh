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
#   SG_KAFKA_HEAP             the broker JVM's max heap (default 512m)
#   SG_KAFKA_SECURE           1: also serve a SASL_SSL listener (below); 0: do
#                             not. Unset: as the data dir was set up (a dir
#                             started secure once stays secure on restart)
#   SG_KAFKA_SASL_PORT        SASL_SSL port (default SG_KAFKA_PORT + 2)
#   SG_KAFKA_SASL_USER        SCRAM user made at format time (default alice)
#   SG_KAFKA_SASL_PASSWORD    its password (default: random, made once per dir)
#
# Secure mode (SG_KAFKA_SECURE=1) turns ACLs on (StandardAuthorizer, open to
# all where a resource has none, User:ANONYMOUS a super user), keeps the
# PLAINTEXT listener as it is and
# adds SASL_SSL://127.0.0.1:$SG_KAFKA_SASL_PORT: TLS with a client
# certificate required (listener.name.sasl_ssl.ssl.client.auth=required),
# then SASL with SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN. Once per data dir it
# makes, with openssl and keytool, under $SG_KAFKA_DIR/secure: a CA
# (ca.pem), the broker's PKCS12 keystore (SAN DNS:localhost,IP:127.0.0.1)
# and truststore, a client key pair signed by the CA (client.pem,
# client-key.pem, PEM for Go), and a second CA that signed nothing
# (untrusted-ca.pem, for negative tests); the SCRAM user is added when the
# storage is formatted (StorageTool --add-scram). start and status then also
# print KAFKA_SECURE_BOOTSTRAP, KAFKA_CA, KAFKA_CLIENT_CERT,
# KAFKA_CLIENT_KEY, KAFKA_UNTRUSTED_CA, KAFKA_SASL_MECHANISM,
# KAFKA_SASL_USER and KAFKA_SASL_PASSWORD. A data dir formatted without
# secure mode cannot turn secure (the SCRAM user is missing): clean it.
#
# Version: the pin is <kafka.version> in scripts/kafka/pom.xml: 4.4.0, the
# newest on Maven Central; the tests' brokers and the compose file run the
# same version. Kafka 4.4.0 depends on slf4j-api 1.7.36,
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
HEAP="${SG_KAFKA_HEAP:-512m}"
STOP_TIMEOUT=30
SASL_PORT="${SG_KAFKA_SASL_PORT:-}"
[[ -n "$SASL_PORT" || ! "$PORT" =~ ^[0-9]+$ ]] || SASL_PORT=$((PORT + 2))
for v in PORT CONTROLLER_PORT SASL_PORT START_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
((START_TIMEOUT >= 1)) || die "SG_KAFKA_START_TIMEOUT must be at least 1"
[[ "$HEAP" =~ ^[0-9]+[mMgG]$ ]] || die "SG_KAFKA_HEAP must look like 512m or 1g, got '$HEAP'"
[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "SG_KAFKA_PORT and SG_KAFKA_CONTROLLER_PORT must differ"
case "${SG_KAFKA_SECURE:-}" in
  "" | 0 | 1) ;;
  *) die "SG_KAFKA_SECURE must be 1, 0 or unset, got '${SG_KAFKA_SECURE}'" ;;
esac
SASL_USER_WANT="${SG_KAFKA_SASL_USER:-}"
SASL_PASSWORD_WANT="${SG_KAFKA_SASL_PASSWORD:-}"
[[ -z "$SASL_USER_WANT" || "$SASL_USER_WANT" =~ ^[A-Za-z0-9._-]+$ ]] ||
  die "SG_KAFKA_SASL_USER may hold letters, digits, '.', '_' and '-' only"
[[ -z "$SASL_PASSWORD_WANT" || "$SASL_PASSWORD_WANT" =~ ^[A-Za-z0-9._-]+$ ]] ||
  die "SG_KAFKA_SASL_PASSWORD may hold letters, digits, '.', '_' and '-' only (it goes into --add-scram and a JAAS line)"

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
SECURE_DIR="$DATA_DIR/secure"
SECURE_STAMP="$SECURE_DIR/.complete"   # the files below are all made
SCRAM_STAMP="$DATA_DIR/format.scram"   # the storage was formatted with the SCRAM user
CA_PEM="$SECURE_DIR/ca.pem"
CLIENT_PEM="$SECURE_DIR/client.pem"
CLIENT_KEY="$SECURE_DIR/client-key.pem"
UNTRUSTED_CA_PEM="$SECURE_DIR/untrusted-ca.pem"
KEYSTORE="$SECURE_DIR/broker.p12"
TRUSTSTORE="$SECURE_DIR/truststore.p12"
STORE_PASS_FILE="$SECURE_DIR/store.password"
SASL_USER_FILE="$SECURE_DIR/sasl.user"
SASL_PASSWORD_FILE="$SECURE_DIR/sasl.password"
SASL_MECHANISM=SCRAM-SHA-256  # printed; SCRAM-SHA-512 and PLAIN work as well

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
  # Secure details as the written config says, so status reports what the
  # running broker serves whatever SG_KAFKA_SECURE the caller has.
  local sp
  sp="$(sed -n 's|^advertised\.listeners=.*SASL_SSL://[^,]*:\([0-9][0-9]*\).*|\1|p' "$PROPS" 2>/dev/null || true)"
  if [[ -n "$sp" && -f "$SECURE_STAMP" ]]; then
    echo "KAFKA_SECURE_BOOTSTRAP=$HOST:$sp"
    echo "KAFKA_CA=$CA_PEM"
    echo "KAFKA_CLIENT_CERT=$CLIENT_PEM"
    echo "KAFKA_CLIENT_KEY=$CLIENT_KEY"
    echo "KAFKA_UNTRUSTED_CA=$UNTRUSTED_CA_PEM"
    echo "KAFKA_SASL_MECHANISM=$SASL_MECHANISM"
    echo "KAFKA_SASL_USER=$(cat "$SASL_USER_FILE")"
    echo "KAFKA_SASL_PASSWORD=$(cat "$SASL_PASSWORD_FILE")"
  fi
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
  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ "$SECURE" == 1 ]]; then
    listeners+=",SASL_SSL://$HOST:$SASL_PORT"
    advertised+=",SASL_SSL://$HOST:$SASL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$PROPS" <<EOF
# Written by scripts/kafka.sh: single-node KRaft broker + controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
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
  if [[ "$SECURE" == 1 ]]; then
    local store_pass user password
    store_pass="$(cat "$STORE_PASS_FILE")"
    user="$(cat "$SASL_USER_FILE")"
    password="$(cat "$SASL_PASSWORD_FILE")"
    cat >>"$PROPS" <<EOF

# SASL_SSL listener (SG_KAFKA_SECURE=1): TLS with a client certificate
# required, then SASL. SCRAM users live in the cluster metadata (added at
# format time); PLAIN checks the JAAS line below.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$password";
listener.name.sasl_ssl.ssl.client.auth=required
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KEYSTORE
listener.name.sasl_ssl.ssl.keystore.password=$store_pass
listener.name.sasl_ssl.ssl.key.password=$store_pass
listener.name.sasl_ssl.ssl.truststore.type=PKCS12
listener.name.sasl_ssl.ssl.truststore.location=$TRUSTSTORE
listener.name.sasl_ssl.ssl.truststore.password=$store_pass

# ACLs: the SASL user is held to them; a resource without ACLs is open to
# all, and the PLAINTEXT listener (User:ANONYMOUS: the tests' own clients,
# the controller) is a super user. A test denies the SASL user something to
# see how a role takes it.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:ANONYMOUS
EOF
  fi
  chmod 600 "$PROPS"
}

# decide_secure: SG_KAFKA_SECURE if set, else whatever the data dir was
# formatted for, so a plain `restart` keeps the secure listener.
decide_secure() {
  SECURE="${SG_KAFKA_SECURE:-}"
  if [[ -z "$SECURE" ]]; then
    SECURE=0
    [[ -f "$SCRAM_STAMP" && -f "$LOG_DIRS/meta.properties" ]] && SECURE=1
  fi
  if [[ "$SECURE" == 1 && -f "$LOG_DIRS/meta.properties" && ! -f "$SCRAM_STAMP" ]]; then
    die "$DATA_DIR was formatted without SG_KAFKA_SECURE=1, so it has no SCRAM user: run 'scripts/kafka.sh clean' or use another SG_KAFKA_DIR"
  fi
  return 0
}

need_tool() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH: it is needed for SG_KAFKA_SECURE=1 ($2)"
}

# random_word N: N random letters and digits.
random_word() {
  local w=""
  while ((${#w} < $1)); do
    w+="$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  done
  echo "${w:0:$1}"
}

# make_secure_files: the CAs, the broker's keystore and truststore, the
# client's key pair and the SASL credentials, once per data dir. Files are
# made in a temporary dir and moved into place when all exist, so an
# interrupted run starts over.
make_secure_files() {
  local user password
  if [[ -f "$SECURE_STAMP" ]]; then
    user="$(cat "$SASL_USER_FILE")"
    password="$(cat "$SASL_PASSWORD_FILE")"
    if [[ -n "$SASL_USER_WANT" && "$SASL_USER_WANT" != "$user" ]] ||
      [[ -n "$SASL_PASSWORD_WANT" && "$SASL_PASSWORD_WANT" != "$password" ]]; then
      die "$DATA_DIR was set up with another SASL user or password (SG_KAFKA_SASL_USER/SG_KAFKA_SASL_PASSWORD): run 'scripts/kafka.sh clean' or use another SG_KAFKA_DIR"
    fi
    return 0
  fi
  need_tool openssl "to make the CA and the certificates"
  need_tool keytool "to make the broker's truststore; it comes with the JDK"
  user="${SASL_USER_WANT:-alice}"
  password="${SASL_PASSWORD_WANT:-$(random_word 24)}"
  local tmp="$SECURE_DIR.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  chmod 700 "$tmp"
  info "making a CA, broker and client certificates in $SECURE_DIR"
  local store_pass
  store_pass="$(random_word 24)"
  if ! STORE_PASS="$store_pass" bash "$CONF_DIR/certs.sh" "$tmp" "$user" >"$DATA_DIR/secure.log" 2>&1; then
    cat "$DATA_DIR/secure.log" >&2
    rm -rf "$tmp"
    die "making the certificates failed (see above)"
  fi
  printf '%s' "$store_pass" >"$tmp/store.password"
  printf '%s' "$user" >"$tmp/sasl.user"
  printf '%s' "$password" >"$tmp/sasl.password"
  chmod 600 "$tmp/store.password" "$tmp/sasl.password"
  touch "$tmp/.complete"
  rm -rf "$SECURE_DIR"
  mv "$tmp" "$SECURE_DIR"
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
  local scram=()
  if [[ "$SECURE" == 1 ]]; then
    local user password m
    user="$(cat "$SASL_USER_FILE")"
    password="$(cat "$SASL_PASSWORD_FILE")"
    for m in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$m=[name=$user,password=$password]")
    done
  fi
  info "formatting $LOG_DIRS (cluster id $id)"
  if ! java -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J_CONF" \
      -Dkafka.logs.dir="$DATA_DIR" \
      kafka.tools.StorageTool format -t "$id" -c "$PROPS" --standalone "${scram[@]}" \
      </dev/null >"$FORMAT_LOG" 2>&1 8>&- 9>&-; then
    cat "$FORMAT_LOG" >&2
    die "formatting storage in $LOG_DIRS failed"
  fi
  echo "$CONTROLLER_PORT" >"$CTRL_PORT_FILE"
  if [[ "$SECURE" == 1 ]]; then
    touch "$SCRAM_STAMP"
  fi
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
  decide_secure
  local p ports=("$PORT" "$CONTROLLER_PORT")
  if [[ "$SECURE" == 1 ]]; then
    [[ "$SASL_PORT" != "$PORT" && "$SASL_PORT" != "$CONTROLLER_PORT" ]] ||
      die "SG_KAFKA_SASL_PORT ($SASL_PORT) must differ from SG_KAFKA_PORT and SG_KAFKA_CONTROLLER_PORT"
    ports+=("$SASL_PORT")
  fi
  for p in "${ports[@]}"; do
    if port_open "$p"; then
      die "$HOST:$p is already in use by another process (another Kafka?); stop it or set SG_KAFKA_PORT / SG_KAFKA_CONTROLLER_PORT / SG_KAFKA_SASL_PORT"
    fi
  done
  cmd_fetch
  need_java
  mkdir -p "$DATA_DIR" "$LOG_DIRS"
  check_controller_port
  if [[ "$SECURE" == 1 ]]; then
    make_secure_files
  fi
  write_props
  format_storage

  local start=$SECONDS
  local also=""
  if [[ "$SECURE" == 1 ]]; then
    also=" and SASL_SSL on $HOST:$SASL_PORT"
  fi
  info "starting Kafka $KAFKA_VERSION on $HOST:$PORT$also (data in $DATA_DIR)"
  {
    echo "===== $(date '+%Y-%m-%d %H:%M:%S') kafka.sh start ====="
  } >>"$OUT_LOG"
  # Own session (so a caller's Ctrl-C / process group kill does not hit it),
  # stdin from /dev/null and all output to a file, so a caller waiting on our
  # stdout/stderr is not held open by the broker.
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  "${launcher[@]}" java -Xms256m -Xmx"$HEAP" -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$DATA_DIR" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" </dev/null >>"$OUT_LOG" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local deadline=$((SECONDS + START_TIMEOUT))
  until port_open "$PORT" && { [[ "$SECURE" != 1 ]] || port_open "$SASL_PORT"; }; do
    # exists, not alive: right after the fork the child is not java yet.
    if ! exists "$pid"; then
      show_logs
      rm -f "$PID_FILE"
      die "the broker exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_logs
      cmd_stop >/dev/null 2>&1 || true
      die "the broker did not open its client ports within $START_TIMEOUT s (stopped it)"
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
  sed -n '6,46s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) lock "$LOCK_FILE" 9; cmd_start ;;
  stop) lock "$LOCK_FILE" 9; cmd_stop ;;
  status) cmd_status ;;
  restart) lock "$LOCK_FILE" 9; decide_secure; cmd_stop; cmd_start ;; # decide first: refuse before stopping
  clean) lock "$LOCK_FILE" 9; cmd_clean ;;
  version) echo "$KAFKA_VERSION" ;;
  -h | --help | help) usage ;;
  *) usage; exit 2 ;;
esac
