"""Session-wide fixtures: private MariaDB servers (tests/support) and one real Ray."""

from __future__ import annotations

pytest_plugins = ["tests.support.fixtures_mariadb", "tests.support.fixtures_ray"]
