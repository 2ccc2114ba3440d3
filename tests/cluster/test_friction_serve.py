"""`dmray serve` as the README runs it: `dmray status` and the driver example work against
it, and it stops promptly and cleanly on SIGINT (Ctrl+C), every time.

The signal reaches whichever thread of the process the kernel picks; a main thread asleep
in an untimed wait never ran the handler, and the server ignored the first SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from serve_app.procfs import processes
from serve_app.rayenv import read_address
from testbed.mariadb import MariaDBServer
from testbed.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _session_processes(sid: int) -> list[str]:
    """Live (not zombie) processes of session `sid`: `dmray serve` runs in a session of its
    own, and every Ray process it starts (GCS, raylet, workers, actors) stays in it."""
    return [f"{st.pid} {st.comm}" for st in processes()
            if st.session == sid and not st.zombie]


def _haproxies_on(stats_port: int) -> list[int]:
    """Serve's HAProxy processes (sessions of their own) configured with this stats port."""
    from serve_app.server import own_haproxies

    saved = os.environ.get("RAY_SERVE_HAPROXY_STATS_PORT")
    os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = str(stats_port)
    try:
        return own_haproxies()
    finally:
        if saved is None:
            del os.environ["RAY_SERVE_HAPROXY_STATS_PORT"]
        else:
            os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] = saved


def _driver_and_status(data_dir: Path, source: MariaDBServer, cwd: Path,
                       env: dict[str, str]) -> None:
    """The README's `dmray status` and driver example, against this server, from a shell
    without any RAY_ variable: they find the cluster and pass Ray's token authentication.
    The driver is run by the Python the venv was made from (as `python examples/driver.py`
    is, without the venv activated) from another directory."""
    out = subprocess.run([str(Path(sys.executable).with_name("dmray")), "status",
                          "--data-dir", str(data_dir)],
                         env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Resources" in out.stdout, out.stdout + out.stderr

    base_python = getattr(sys, "_base_executable", sys.executable)
    out = subprocess.run(
        [base_python, str(ROOT / "examples" / "driver.py"), "--data-dir", str(data_dir),
         "--host", source.host, "--port", str(source.port), "--user", source.user,
         "--source-name", "readme-driver"],
        env={**env, "DMRAY_EXAMPLE_PASSWORD": source.password}, cwd=cwd,
        capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "created:" in out.stdout and "deleted: readme-driver" in out.stdout, out.stdout
    assert "worker1" in out.stdout.splitlines()[0], out.stdout


def test_serve_as_the_readme_says_and_sigint_stops_it(tmp_path: Path,
                                                      source1: MariaDBServer) -> None:
    """One real `dmray serve` (a server start costs CI time): the README's `dmray status`
    and driver example work against it, then SIGINT stops it promptly and cleanly."""
    port, stats_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(stats_port)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app.cli", "serve", "--data-dir",
             str(tmp_path / "data"), "--port", str(port), "--host", "127.0.0.1",
             "--num-cpus", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"dmray serve exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/cluster/workers",
                             timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert _haproxies_on(stats_port), "the test should see the server's HAProxy"
        assert read_address(tmp_path / "data")
        clean_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        _driver_and_status(tmp_path / "data", source1, tmp_path, clean_env)

        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"SIGINT ignored for 30 s:\n{log.read_text()[-3000:]}"
                                 ) from None
        took = time.monotonic() - sent
        text = log.read_text()
        assert code == 0, f"exit code {code} after {took:.1f} s:\n{text[-3000:]}"
        assert "stopping dmray" in text and "dmray stopped" in text, text[-3000:]
        # Nothing of it is left running: no Ray process, no HAProxy.
        left = _session_processes(proc.pid)
        assert not left, f"left running after exit: {left}"
        assert not _haproxies_on(stats_port)
        assert read_address(tmp_path / "data") is None  # no server runs there any more
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in _haproxies_on(stats_port):
            os.kill(pid, signal.SIGKILL)


STOPPER_SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from serve_app.server import Stopper

    stopper = Stopper(timeout_s=float(sys.argv[1]), say=lambda m: print(m, flush=True))
    stopper.install()
    stopper.serving = True
    print("waiting", flush=True)
    stopper.wait()
    print("stopping", flush=True)
    # A shutdown that never ends (as a Ray call blocked in C++ code).
    sys.exit(stopper.stop(lambda: threading.Event().wait()))
""")


def _run_stopper(timeout_s: float, signals: int) -> tuple[int, float, str]:
    proc = subprocess.Popen([sys.executable, "-c", STOPPER_SCRIPT, str(timeout_s)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "stopping"
    sent = time.monotonic()
    if signals > 1:
        proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, time.monotonic() - sent, proc.stdout.read()


def test_second_sigint_exits_at_once_and_shutdown_is_bounded() -> None:
    # The second SIGINT while the shutdown hangs: exit at once, 128 + SIGINT.
    code, took, out = _run_stopper(timeout_s=60, signals=2)
    assert code == 130 and took < 5, (code, took, out)
    assert "SIGINT again" in out
    # A single SIGINT and a shutdown that hangs: killed when its bound passes, exit 1.
    code, took, out = _run_stopper(timeout_s=2, signals=1)
    assert code == 1 and 1.5 < took < 10, (code, took, out)
    assert "clean shutdown took over 2 s" in out
