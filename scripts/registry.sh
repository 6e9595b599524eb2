#!/usr/bin/env bash
# Run a real schema registry with the Confluent Schema Registry API on
# 127.0.0.1, without Docker: Apicurio Registry (in-memory H2 storage), built
# once from Maven Central by Maven (scripts/registry/pom.xml) and run on the
# local java. Its Confluent-compatible API is at /apis/ccompat/v6.
#
# Usage: scripts/registry.sh {fetch|start|stop|status|clean|version}
#
#   fetch    build the runnable registry once into $SG_REGISTRY_HOME
#            (skipped if present)
#   start    fetch if needed, start the registry in the background and wait
#            until its API answers; prints KEY=VALUE lines on stdout:
#            REGISTRY_URL=http://127.0.0.1:8081/apis/ccompat/v6, ...
#   stop     SIGTERM, wait up to 30 s, then SIGKILL (no-op if not running)
#   status   prints KEY=VALUE lines and exits 0 if running, exits 3 if not
#   clean    stop and delete the data dir (the schemas are in memory: a
#            stopped registry has forgotten them anyway)
#   version  print the pinned Apicurio Registry version
#
# Environment:
#   SG_REGISTRY_HOME           build cache (default
#                              ~/.cache/scattergather/apicurio-registry-<version>)
#   SG_REGISTRY_DIR            data dir: pid and log (default
#                              /tmp/scattergather-registry)
#   SG_REGISTRY_PORT           HTTP port (default 8081)
#   SG_REGISTRY_START_TIMEOUT  seconds to wait for the API (default 120)
#   SG_REGISTRY_MVN_SETTINGS   Maven settings for the build (default
#                              scripts/registry/settings.xml, which sends
#                              every repository to Maven Central)
#
# The registry has no authentication: Apicurio authenticates through an
# OpenID Connect server only, which this script does not run.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_DIR="$SCRIPT_DIR/registry"
POM="$CONF_DIR/pom.xml"
MVN_SETTINGS="${SG_REGISTRY_MVN_SETTINGS:-$CONF_DIR/settings.xml}"

die() { echo "registry.sh: error: $*" >&2; exit 1; }
info() { echo "registry.sh: $*" >&2; }

[[ -f "$POM" ]] || die "missing $POM"

VERSION="$(sed -n 's:.*<apicurio.version>\([^<]*\)</apicurio.version>.*:\1:p' "$POM" | head -n 1)"
[[ -n "$VERSION" ]] || die "no <apicurio.version> in $POM"

HOST=127.0.0.1
PORT="${SG_REGISTRY_PORT:-8081}"
START_TIMEOUT="${SG_REGISTRY_START_TIMEOUT:-120}"
STOP_TIMEOUT=30
for v in PORT START_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done

REG_HOME="${SG_REGISTRY_HOME:-${HOME:-/tmp}/.cache/scattergather/apicurio-registry-$VERSION}"
APP="$REG_HOME/app"
RUNNER="$APP/registry-runner.jar"
FETCH_STAMP="$REG_HOME/.fetched"

DATA_DIR="${SG_REGISTRY_DIR:-/tmp/scattergather-registry}"
[[ "$DATA_DIR" = /* ]] || DATA_DIR="$PWD/$DATA_DIR"
PID_FILE="$DATA_DIR/registry.pid"
OUT_LOG="$DATA_DIR/registry.log"
LOCK_FILE="$DATA_DIR.lock"
API_PATH=/apis/ccompat/v6

# lock FILE FD: serialise concurrent invocations. Children that outlive us
# must not inherit FD.
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$1")"
  eval "exec $2>>\"\$1\""
  flock "$2"
}

pom_sum() { cat "$POM" "$MVN_SETTINGS" | cksum | awk '{print $1 "-" $2}'; }

fetched() {
  [[ -f "$FETCH_STAMP" && "$(cat "$FETCH_STAMP")" == "$(pom_sum)" && -f "$RUNNER" ]]
}

# The application module's jar has no Jandex index, so Quarkus would not
# discover its beans and REST resources without these.
index_args() {
  local a n
  for a in apicurio-registry-app apicurio-registry-schema-util-provider \
    apicurio-registry-schema-util-common apicurio-registry-utils-import-export \
    apicurio-registry-utils-kafka; do
    n="${a#apicurio-registry-}"
    echo "-Dquarkus.index-dependency.$n.group-id=io.apicurio"
    echo "-Dquarkus.index-dependency.$n.artifact-id=$a"
  done
}

cmd_fetch() {
  if fetched; then
    info "Apicurio Registry $VERSION already built in $APP"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) not found on PATH: it is needed once to build the registry (e.g. apt-get install maven)"
  command -v java >/dev/null 2>&1 || die "java not found on PATH: install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)"
  lock "$REG_HOME/.lock" 8
  if fetched; then
    info "Apicurio Registry $VERSION already built in $APP"
    return 0
  fi
  local tmp="$REG_HOME/build.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  info "building Apicurio Registry $VERSION from Maven Central into $APP ..."
  local start=$SECONDS args
  mapfile -t args < <(index_args)
  # (sed drops the stray ESC[0m that Maven 3.8 prints even with -B -q.)
  if ! mvn -B -q -s "$MVN_SETTINGS" -f "$POM" package -DskipTests \
      -Dregistry.build.dir="$tmp/target" "${args[@]}" </dev/null 2>&1 |
      sed 's/\x1b\[0m//g' >&2; then
    rm -rf "$tmp"
    die "mvn could not build the registry (see the output above)"
  fi
  local runner
  runner="$(compgen -G "$tmp/target/*-runner.jar" | head -n 1 || true)"
  [[ -n "$runner" && -d "$tmp/target/lib" ]] ||
    { rm -rf "$tmp"; die "the build finished but made no runner jar and lib/"; }
  mkdir -p "$tmp/app"
  mv "$runner" "$tmp/app/registry-runner.jar"
  mv "$tmp/target/lib" "$tmp/app/lib"
  rm -rf "$APP"
  mv "$tmp/app" "$APP"
  rm -rf "$tmp"
  pom_sum >"$FETCH_STAMP"
  info "built in $((SECONDS - start)) s"
}

# exists PID: the process exists and is not a zombie.
exists() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# alive PID: exists and is our registry (not a recycled pid).
alive() {
  exists "$1" || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "-Dscattergather.registry.dir=$DATA_DIR "
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

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# api_ready: GET /subjects answers 200.
api_ready() {
  timeout 5 bash -c "
    exec 3<>/dev/tcp/$HOST/$PORT || exit 1
    printf 'GET $API_PATH/subjects HTTP/1.0\r\nHost: $HOST\r\n\r\n' >&3
    IFS= read -r line <&3 || exit 1
    [[ \"\$line\" == *' 200'* ]]
  " 2>/dev/null
}

print_info() {
  echo "REGISTRY_URL=http://$HOST:$PORT$API_PATH"
  echo "REGISTRY_VERSION=$VERSION"
  echo "REGISTRY_PID=$1"
  echo "REGISTRY_DIR=$DATA_DIR"
  echo "REGISTRY_LOG=$OUT_LOG"
}

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    info "already running (pid $pid)"
    print_info "$pid"
    return 0
  fi
  rm -f "$PID_FILE"
  if port_open "$PORT"; then
    die "$HOST:$PORT is already in use by another process; stop it or set SG_REGISTRY_PORT"
  fi
  cmd_fetch
  mkdir -p "$DATA_DIR"
  info "starting Apicurio Registry $VERSION on $HOST:$PORT (log in $OUT_LOG)"
  echo "===== $(date '+%Y-%m-%d %H:%M:%S') registry.sh start =====" >>"$OUT_LOG"
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  local start=$SECONDS
  # The marker property names the data dir, so stop finds this process only.
  "${launcher[@]}" java -Xms64m -Xmx384m -Djava.awt.headless=true \
    -Dscattergather.registry.dir="$DATA_DIR" \
    -Dquarkus.http.host="$HOST" -Dquarkus.http.port="$PORT" \
    -Dquarkus.log.level=WARN \
    -jar "$RUNNER" </dev/null >>"$OUT_LOG" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until api_ready; do
    if ! exists "$pid"; then
      tail -n 50 "$OUT_LOG" >&2 || true
      rm -f "$PID_FILE"
      die "the registry exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 50 "$OUT_LOG" >&2 || true
      cmd_stop >/dev/null 2>&1 || true
      die "the registry did not answer on $HOST:$PORT within $START_TIMEOUT s (stopped it)"
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
    info "running (pid $pid)"
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
  sed -n '7,31s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) lock "$LOCK_FILE" 9; cmd_start ;;
  stop) lock "$LOCK_FILE" 9; cmd_stop ;;
  status) cmd_status ;;
  clean) lock "$LOCK_FILE" 9; cmd_clean ;;
  version) echo "$VERSION" ;;
  -h | --help | help) usage ;;
  *) usage; exit 2 ;;
esac
