"""Ray-free MySQL/MariaDB helpers: connections, server checks, SQL quoting."""
