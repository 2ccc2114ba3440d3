#!/usr/bin/env bash
# Set up and run a dmray server: local Ray, SQLite event log in ./dmray-data, API on :8261.
# Any argument is passed to `dmray serve` (see `.venv/bin/dmray serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dmray serve "$@"
