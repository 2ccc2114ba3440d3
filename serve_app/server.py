"""Starting and stopping a whole dmray server: Ray, control plane, HTTP API."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import ray
from ray import serve
from ray.serve.config import HTTPOptions

from actors.bootstrap import register_master, start_control_plane
from actors.config import API_RESOURCE, NAMESPACE, RuntimeConfig, control_plane_options
from serve_app.app import DMApi
from serve_app.procfs import descendants, start_time

log = logging.getLogger("dmray.server")

APP_NAME = "dmray"

# Ray Serve's throughput mode: requests reach the API replica through HAProxy (C) instead
# of the Python proxy actor, which on a 2-core machine halves the latency. These must be
# in the environment of the Ray processes, so they are set before Ray starts; nodes of a
# `ray up` cluster set them in their own environment (see cluster.yaml).
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def set_serve_env(haproxy: bool = True) -> None:
    """`haproxy=False` (the API over TLS): Serve's Python proxy, which terminates TLS;
    HAProxy's frontend here speaks plain HTTP only."""
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value if haproxy else "0")
    # HAProxy's stats and metrics listeners default to fixed ports (8404, 9101): take free
    # ones, so that two servers (or a test's second server) can share one machine.
    # Likewise Serve's fallback proxy (8500, 9500), which HAProxy sends requests to while
    # no replica is routable; it binds with SO_REUSEPORT, so a shared port mixes servers.
    for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"):
        if key not in os.environ:
            os.environ[key] = str(free_port())
    # Replicas listen behind HAProxy on ports from a range (default 30000-31000) with
    # SO_REUSEPORT: two servers on one machine would both bind 30000 and the kernel would
    # hand each one the other's requests. Each server gets a block of its own.
    for proto, low, high in (("HTTP", 10000, 15000), ("GRPC", 15000, 20000)):
        if f"RAY_SERVE_DIRECT_INGRESS_MIN_{proto}_PORT" not in os.environ:
            base = _free_block(low, high, 16)
            os.environ[f"RAY_SERVE_DIRECT_INGRESS_MIN_{proto}_PORT"] = str(base)
            os.environ[f"RAY_SERVE_DIRECT_INGRESS_MAX_{proto}_PORT"] = str(base + 16)


# Ports are picked now and bound later, after Ray has started: a port from the kernel's
# ephemeral range (32768-60999) can be taken meanwhile by one of Ray's own sockets, which
# crashed HAProxy at startup ("cannot bind socket"). So every pick comes from below it,
# and a process never hands out one port twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A free port in 20000-30000, below the kernel's ephemeral range."""
    return _free_block(20000, 30000, 1)


def _free_block(low: int, high: int, size: int) -> int:
    """The first port of `size` consecutive free ports in [low, high), picked at random."""
    for _ in range(200):
        base = random.randrange(low, high - size, size)
        block = range(base, base + size)
        if _handed_out.isdisjoint(block) and all(_bindable(p) for p in block):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no {size} free consecutive ports in {low}-{high}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def init_ray(address: str | None, num_cpus: int | None = None, haproxy: bool = True) -> bool:
    """Connect to Ray; True when this process started a local instance (and so owns it)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        return False
    set_serve_env(haproxy)
    # "local" starts a fresh instance even when another cluster runs on this machine.
    ray.init(address="local", namespace=NAMESPACE, include_dashboard=False,
             num_cpus=num_cpus, resources={API_RESOURCE: 1}, log_to_driver=False)
    return True


def gcs_address() -> str:
    """The address of the Ray cluster this process is connected to."""
    return str(ray.get_runtime_context().gcs_address)


def start(cfg: RuntimeConfig, host: str = "127.0.0.1",
          tls: tuple[str, str] | None = None) -> Any:
    """Start (or join) the control plane and the API (over TLS with `tls`: certificate
    and key files); returns the coordinator handle."""
    coordinator = start_control_plane(cfg)
    ssl = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
    serve.start(http_options=HTTPOptions(host=host, port=cfg.port, **ssl),
                logging_config={"enable_access_log": False, "log_level": "WARNING"})
    serve.run(DMApi.options(ray_actor_options=api_actor_options())  # type: ignore[attr-defined]
              .bind(cfg.port), name=APP_NAME, route_prefix="/")
    register_master(coordinator, cfg.port)
    return coordinator


def api_actor_options() -> dict[str, Any]:
    return {"num_cpus": 0, **control_plane_options()}


def stop(owns_ray: bool) -> None:
    """Leave the cluster. A local Ray this process started goes down with everything on it
    (the log keeps the state); a joined cluster keeps serving, its actors are detached."""
    haproxies = own_haproxies() if owns_ray else []
    # Ray's processes: the GCS and raylet are children of this process, the workers the
    # raylet's; a worker whose raylet is gone is reparented and dies on its own, later.
    started = _with_start_times(descendants(os.getpid())) if owns_ray else {}
    ray.shutdown()
    if owns_ray:
        stop_processes(haproxies)
        _reap(started, PROCESS_EXIT_WAIT_S)
        log.info("local Ray stopped")


PROCESS_EXIT_WAIT_S = 5.0


def _with_start_times(pids: list[int]) -> dict[int, str]:
    return {pid: t for pid in pids if (t := start_time(pid)) is not None}


def _reap(started: dict[int, str], wait_s: float) -> None:
    """Wait up to `wait_s` for these processes (pid: start time, so a reused pid is not
    taken for one) to exit; kill the ones still there."""
    deadline = time.monotonic() + wait_s
    alive = started
    while alive:
        alive = {p: t for p, t in alive.items() if start_time(p) == t}
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if alive:
        log.info("killing %d Ray processes left after shutdown", len(alive))
        stop_processes(list(alive), signal.SIGKILL)


def own_haproxies() -> list[int]:
    """Serve's HAProxy processes of this server (found by the stats port set_serve_env gave
    it). Serve starts them in sessions of their own and Ray's shutdown leaves them running."""
    port = os.environ.get("RAY_SERVE_HAPROXY_STATS_PORT")
    if not port:
        return []
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            if not cmd[0].endswith(b"/haproxy") or b"-f" not in cmd:
                continue
            cfg = Path(cmd[cmd.index(b"-f") + 1].decode()).read_text()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        if re.search(rf":{port}\b", cfg):
            pids.append(int(d.name))
    return pids


def stop_processes(pids: list[int], sig: int = signal.SIGTERM) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# How long a first SIGINT/SIGTERM gives the clean shutdown before the server is killed.
STOP_TIMEOUT_S = 15.0
EXIT_FORCED = 1                      # the clean shutdown did not end within its bound
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopper:
    """SIGINT/SIGTERM for `dmray serve`: the first starts a clean shutdown bounded by
    `timeout_s`, after which the server's processes are killed; a second one kills them at
    once.

    A signal reaches whichever thread of the process the kernel picks (Ray's C++ threads
    do not block it), while CPython runs a Python handler only when the main thread
    executes bytecode again. A main thread asleep in an untimed `Event.wait()` therefore
    never saw a SIGINT that landed on another thread (the first SIGINT was ignored, a
    second one that happened to hit the main thread stopped it). So the main thread only
    ever waits in short slices, and the shutdown itself, which blocks in Ray's C++ code,
    runs in a thread of its own while the main thread keeps watching for a second signal.
    """

    SLICE_S = 0.2

    def __init__(self, timeout_s: float = STOP_TIMEOUT_S,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.timeout_s = timeout_s
        self.say = say
        self.requested = threading.Event()
        self.signals = 0
        self.serving = False           # False while starting: a signal aborts the startup
        self.owns_ray = False

    def install(self) -> None:
        """(Re)install the handlers; again after ray.init, which sets its own SIGTERM one."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            self.say(f"{signal.Signals(signum).name} again: stopping now")
            self.force_exit(128 + signum)
        self.requested.set()
        if not self.serving:
            raise KeyboardInterrupt  # abort the startup, then stop what it started

    def wait(self) -> None:
        """Block until a stop is requested, in slices so that signal handlers run."""
        while not self.requested.wait(self.SLICE_S):
            pass

    def stop(self, stop_fn: Callable[[], None]) -> int:
        """Run `stop_fn` within the bound; the exit code (0: clean). Never returns when
        the bound passes or a second signal comes: the process exits."""
        self.serving = True              # from now on a signal no longer raises
        failed: list[BaseException] = []

        def run() -> None:
            try:
                stop_fn()
            except BaseException as exc:  # reported; the exit code says it failed
                failed.append(exc)

        worker = threading.Thread(target=run, name="dmray-stop", daemon=True)
        worker.start()
        deadline = time.monotonic() + self.timeout_s
        while worker.is_alive():
            if time.monotonic() >= deadline:
                self.say(f"clean shutdown took over {self.timeout_s:g} s: stopping now")
                self.force_exit(EXIT_FORCED)
            worker.join(self.SLICE_S)
        if failed:
            log.error("shutdown failed: %s: %s", type(failed[0]).__name__, failed[0])
            return EXIT_FORCED
        return 0

    def force_exit(self, code: int) -> None:
        """Kill what this server started (a local Ray it owns: its process tree and the
        HAProxy processes Serve started in sessions of their own), then exit at once."""
        with contextlib.suppress(Exception):
            if self.owns_ray:
                pids = own_haproxies() + descendants(os.getpid())
                stop_processes(pids, signal.SIGKILL)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
