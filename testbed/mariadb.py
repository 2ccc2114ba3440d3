"""Private, throw-away MariaDB servers for the test suite.

Each server has its own datadir, TCP port on 127.0.0.1 and unix socket, all under a fresh
temp dir; the shared server on 3306 is never touched. `mariadb-install-db` runs once per
process into a template datadir that every server then copies, which is much faster than
bootstrapping each one.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import pymysql
from pymysql.constants import CLIENT

from testbed.ports import unique_port

USER = "dmray"
PASSWORD = "dmray-secret-pw"
HOST = "127.0.0.1"

# Temp dirs are named with this prefix so a later run can recognise (and reap) the leftovers
# of a run that was killed before it could stop its servers.
_DIR_PREFIX = "dmray-mariadb-"
_OWNER_FILE = "owner.pid"

# Must be identical for install-db and the server, or InnoDB would resize the redo log on
# every start. 32M (instead of the 96M default) keeps each copied datadir small.
_INNODB_LOG_FILE_SIZE = "32M"


class MariaDBNotInstalled(RuntimeError):
    """`mariadbd` or `mariadb-install-db` is missing on this machine."""


class MariaDBStartError(RuntimeError):
    """A private server did not come up; the message carries the tail of its error log."""


def _find_binary(name: str, env_var: str) -> str:
    override = os.environ.get(env_var)
    if override:
        if not os.access(override, os.X_OK):
            raise MariaDBNotInstalled(f"{env_var}={override} is not an executable file")
        return override
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/bin")
         if (p := Path(d) / name).is_file() and os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise MariaDBNotInstalled(
            f"`{name}` was not found (PATH, /usr/sbin, ...). The test suite runs private "
            f"MariaDB servers: install the mariadb-server package (e.g. `apt-get install "
            f"mariadb-server`) or point {env_var} at the binary."
        )
    return found


def mariadbd_path() -> str:
    return _find_binary("mariadbd", "DMRAY_MARIADBD")


def install_db_path() -> str:
    return _find_binary("mariadb-install-db", "DMRAY_MARIADB_INSTALL_DB")


def _os_user() -> str:
    return getpass.getuser()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<no error log: {exc}>"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- template datadir --------------------------------------------------------------------

_template_lock = threading.Lock()
_template_dir: Path | None = None


def template_datadir() -> Path:
    """Bootstrap the system tables once per process; servers copy the result."""
    global _template_dir
    with _template_lock:
        if _template_dir is not None and (_template_dir / "mysql").is_dir():
            return _template_dir
        _reap_stale_dirs()
        base = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX + "template-"))
        (base / _OWNER_FILE).write_text(str(os.getpid()))
        datadir = base / "data"
        log = base / "install-db.log"
        cmd = [
            install_db_path(), "--no-defaults",
            "--auth-root-authentication-method=socket", "--skip-test-db",
            f"--user={_os_user()}", f"--datadir={datadir}",
            f"--innodb-log-file-size={_INNODB_LOG_FILE_SIZE}",
        ]
        with log.open("wb") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=120,
                                check=False).returncode
        if rc != 0:
            tail = _tail(log)
            shutil.rmtree(base, ignore_errors=True)
            raise MariaDBStartError(f"mariadb-install-db failed (rc={rc}):\n{tail}")
        atexit.register(shutil.rmtree, base, True)
        _template_dir = datadir
        return datadir


def _reap_stale_dirs() -> None:
    """Kill servers and delete dirs left by earlier runs whose owning process is gone.

    A server is only killed if its command line names that very datadir, so a recycled pid
    can never take down an unrelated process.
    """
    for base in Path(tempfile.gettempdir()).glob(_DIR_PREFIX + "*"):
        try:
            owner = int((base / _OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not fully created yet, or not ours: leave it alone
        if _pid_alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError):
            pid = int((base / "mariadbd.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if f"--datadir={base / 'data'}" in cmdline.split("\0"):
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)  # let it die before its files are deleted
        shutil.rmtree(base, ignore_errors=True)


# --- the server ---------------------------------------------------------------------------


class MariaDBServer:
    """One private mariadbd: `start()`, use, `stop()` (also a context manager).

    SQL helpers (`execute`, `executemany`, `query`, `connect`) log in as the OS user (root)
    over the unix socket, i.e. with full admin rights and no password; `connect(as_root=
    False)` logs in as the `dmray` user over TCP, the way dmray itself does.
    """

    host: str = HOST
    user: str = USER
    password: str = PASSWORD

    def __init__(
        self,
        server_id: int,
        *,
        name: str = "",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.server_id = server_id
        self.name = name or f"mariadb-{server_id}"
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.port = 0
        self._base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # Everything lives in base_dir; the socket path stays well under the 108-byte limit.
    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._base_dir

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket(self) -> str:
        return str(self.base_dir / "mariadbd.sock")

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "mariadbd.pid"

    @property
    def error_log(self) -> Path:
        return self.base_dir / "error.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        return (f"MariaDBServer(name={self.name!r}, server_id={self.server_id}, "
                f"port={self.port}, pid={self.pid})")

    def url(self, database: str = "") -> str:
        """SQLAlchemy URL for the dmray user over TCP."""
        return (f"mysql+asyncmy://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{quote(database, safe='')}")

    def conn_kwargs(self) -> dict[str, Any]:
        """host/port/user/password of the dmray user, e.g. for a dmray source config."""
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password}

    # -- lifecycle --

    def start(self) -> MariaDBServer:
        if self.running:
            return self
        template = template_datadir()
        mariadbd = mariadbd_path()
        for attempt in range(3):
            self._base_dir = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{self.server_id}-"))
            try:
                (self.base_dir / _OWNER_FILE).write_text(str(os.getpid()))
                (self.base_dir / "tmp").mkdir()
                shutil.copytree(template, self.datadir)
                self.port = unique_port(HOST)
                self._spawn(mariadbd)
                self._wait_ready()
                self._create_dmray_user()
                break
            except MariaDBStartError as exc:
                self.stop()
                # Another process grabbed the port between our probe and the bind: retry.
                if "Address already in use" not in str(exc) or attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise
        atexit.register(self.stop)  # in case the session dies before the fixture teardown
        return self

    def _spawn(self, mariadbd: str) -> None:
        args = [
            mariadbd, "--no-defaults",  # must come first: ignore /etc/mysql/*.cnf
            f"--user={_os_user()}",
            f"--datadir={self.datadir}", f"--tmpdir={self.base_dir / 'tmp'}",
            f"--socket={self.socket}", f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            f"--port={self.port}", f"--bind-address={self.host}",
            f"--server-id={self.server_id}",
            "--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-image=FULL",
            "--skip-name-resolve", "--max-connections=300",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
            # Small and fast: test data is disposable, durability is not needed.
            "--innodb-buffer-pool-size=64M",
            f"--innodb-log-file-size={_INNODB_LOG_FILE_SIZE}",
            "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
            "--performance-schema=OFF",
            *self.extra_args,
        ]
        # Own session: a Ctrl-C at the terminal reaches pytest (which tears down cleanly),
        # not the servers directly.
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                raise MariaDBStartError(
                    f"{self.name}: mariadbd exited with rc={rc} during startup "
                    f"(port {self.port}). Tail of {self.error_log}:\n{_tail(self.error_log)}")
            if os.path.exists(self.socket):
                try:
                    with self.connect() as conn, conn.cursor() as cur:
                        cur.execute("SELECT 1")
                    return
                except pymysql.MySQLError as exc:
                    last_err = exc
            time.sleep(0.05)
        raise MariaDBStartError(
            f"{self.name}: mariadbd did not accept connections within "
            f"{self.startup_timeout:.0f}s (port {self.port}, last error: {last_err}). "
            f"Tail of {self.error_log}:\n{_tail(self.error_log)}")

    def _create_dmray_user(self) -> None:
        # 'localhost' as well as '%': on servers that have an anonymous ''@'localhost'
        # account, that one would win over '%' for local logins.
        for host in ("%", "localhost"):
            self.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                         (self.user, host, self.password))
            self.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION",
                         (self.user, host))

    def crash(self) -> None:
        """SIGKILL the server and keep its data dir and port (see `restart`)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self) -> MariaDBServer:
        """Start again on the same data dir and port, after `crash`."""
        if not self.running:
            self.pid_file.unlink(missing_ok=True)
            self._spawn(mariadbd_path())
            self._wait_ready()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; then delete the temp dir. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        base, self._base_dir = self._base_dir, None
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)

    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- SQL helpers (blocking; wrap in asyncio.to_thread from async tests if needed) --

    def connect(self, database: str | None = None, *, as_root: bool = True,
                autocommit: bool = True) -> pymysql.connections.Connection[Any]:
        """A pymysql connection; root over the unix socket, or dmray over TCP."""
        common: dict[str, Any] = {
            "database": database, "autocommit": autocommit, "charset": "utf8mb4",
            "connect_timeout": 5, "client_flag": CLIENT.MULTI_STATEMENTS,
        }
        if as_root:
            return pymysql.connect(unix_socket=self.socket, user=_os_user(), **common)
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, **common)

    def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] | None = None, *,
                database: str | None = None) -> int:
        """Run one or several `;`-separated statements (autocommit); rows affected by the
        first."""
        with self.connect(database) as conn, conn.cursor() as cur:
            affected = cur.execute(sql, args)
            while cur.nextset():  # drain the results of further statements
                pass
            return int(affected)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | dict[str, Any]], *,
                    database: str | None = None) -> int:
        with self.connect(database) as conn, conn.cursor() as cur:
            return int(cur.executemany(sql, list(seq)) or 0)

    def query(self, sql: str, args: Sequence[Any] | dict[str, Any] | None = None, *,
              database: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return [tuple(row) for row in cur.fetchall()]


def start_servers(server_ids: Sequence[int], *, names: Sequence[str] = (),
                  extra_args: Sequence[str] = ()) -> list[MariaDBServer]:
    """Start several servers concurrently; if any fails, stop those that came up and raise."""
    names = list(names) or [""] * len(server_ids)
    servers = [MariaDBServer(sid, name=n, extra_args=extra_args)
               for sid, n in zip(server_ids, names, strict=True)]
    template_datadir()  # once, before the threads race for it
    with ThreadPoolExecutor(max_workers=len(servers) or 1) as pool:
        futures = [pool.submit(s.start) for s in servers]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
    if errors:
        for s in servers:
            s.stop()
        raise errors[0]
    return servers
