#!/usr/bin/env bash
# Installs everything the demo, the tests and the benchmarks need, on a fresh Debian/Ubuntu
# machine or in CI: system packages (nginx, wrk: the benchmark smoke test drives them), a
# virtualenv in .venv with the gateway and its dev tools. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_system="${BOOTSTRAP_SYSTEM:-1}"
packages=(nginx-light wrk)
if [ "$want_system" = 1 ]; then
  missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing+=(nginx-light)
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    echo "bootstrap: installing ${missing[*]}"
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
  "$python" -m venv .venv
fi
stamp=.venv/.bootstrap-stamp
digest=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$digest" > "$stamp"
fi
