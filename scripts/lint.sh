#!/usr/bin/env bash
# ruff, mypy --strict and import-linter (the test suite runs them too).
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTSTRAP_SYSTEM=0 bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
