#!/usr/bin/env bash
# Benchmarks: the proxy against a direct connection and nginx, then route-table builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python bench/proxy_bench.py "$@"
.venv/bin/python bench/table_build.py
