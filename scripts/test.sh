#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs pytest
# (unit, end-to-end, docs build, ruff, mypy --strict, import-linter, bench smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
