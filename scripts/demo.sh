#!/usr/bin/env bash
# The gateway on the quickstart manifests with three demo upstreams; prints curl commands.
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTSTRAP_SYSTEM=0 bash scripts/bootstrap.sh
exec .venv/bin/gateway demo "$@"
