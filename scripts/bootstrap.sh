#!/usr/bin/env bash
# Installs everything the demo, the tests and the benchmarks need, on a fresh Debian/Ubuntu
# machine or in CI: system packages (nginx, wrk: the benchmark smoke test drives them;
# redis-server: shared rate limits and breaker state are tested against a real one; openssl and
# curl: the HTTPS tests check the gateway's certificates with them), a
# virtualenv in .venv with the gateway, its dev tools, every first-party plugin under
# plugins/ and the example third-party plugin. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_system="${BOOTSTRAP_SYSTEM:-1}"
if [ "$want_system" = 1 ]; then
  missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing+=(nginx-light)
  { command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; } || missing+=(redis-server)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
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
# The gateway and every plugin distribution, editable, in one resolver run.
distributions=(-e '.[dev]')
for project in plugins/*/ examples/third-party-plugin/; do
  [ -f "$project/pyproject.toml" ] && distributions+=(-e "$project")
done
stamp=.venv/.bootstrap-stamp
digest=$(cat pyproject.toml plugins/*/pyproject.toml examples/*/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "${distributions[@]}"
  echo "$digest" > "$stamp"
fi
