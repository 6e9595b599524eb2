#!/usr/bin/env bash
# Creates (once) the virtual environment of the Python worker and installs
# requirements.txt into it, then prints the path of its python on stdout.
# A second run with the same requirements.txt only prints the path.
#
# Usage: examples/python-worker/setup.sh
# Environment: SG_PYWORKER_VENV, the venv's directory (default
# ~/.cache/scattergather/pyworker-venv); PYTHON, the interpreter that
# creates it (default python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SG_PYWORKER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/scattergather/pyworker-venv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

log() { echo "setup.sh: $*" >&2; }

# One installer at a time per venv.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
command -v flock >/dev/null && flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import confluent_kafka, fastavro' 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi

command -v "$python" >/dev/null || { log "$python is not installed"; exit 1; }
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian and Ubuntu ship the venv module apart from the interpreter.
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing python3-venv"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  else
    log "$python has no venv module: install python3-venv"
    exit 1
  fi
fi

log "creating $venv"
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv/bin/python"
