#!/usr/bin/env bash
# Set up and run every check: ruff, mypy and the test suite (real MariaDB, real Ray).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
