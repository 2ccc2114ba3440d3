#!/usr/bin/env bash
# Create .venv and install dmray into it (editable). `--test` adds the test tools and makes
# sure the MariaDB server binaries the tests start privately are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  PY=python3.11
fi

extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  # mariadb-server: the tests start private servers from its binaries; mydumper: the
  # `load` mode is tested on a real mydumper dump.
  missing=""
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing="mariadb-server"
  command -v mydumper >/dev/null 2>&1 || missing="$missing mydumper"
  if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".${extras}"
