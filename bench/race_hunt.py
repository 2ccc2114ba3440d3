"""Race hunting: the multi-source scenarios (tests/scenarios, marker `race`) run again and
again, each time in a fresh pytest process with randomized delays at the actor
boundaries (actors/chaos.py: DMRAY_CHAOS_JITTER_MS) and a new DMRAY_CHAOS_SEED, so that
interleavings a loaded machine produces once in a while come up on purpose. Not a timed
test: it reports how many runs passed and the longest streak of consecutive clean runs
(issue 10 asks for 50).

    .venv/bin/python bench/race_hunt.py                         # 50 runs, up to 50 ms delays
    .venv/bin/python bench/race_hunt.py --runs 5 --jitter-ms 100 --stop-on-failure
    .venv/bin/python bench/race_hunt.py -k "four_sources or shard" --seed 1000
    .venv/bin/python bench/race_hunt.py --out docs/race_hunt.md  # the default report file
    .venv/bin/python bench/race_hunt.py --runs 50 --rounds 10   # 10 runs per pytest process

Each run is `python -m pytest tests/scenarios -m race -q -p no:cacheprovider` with its own
private MariaDB servers and Ray (about 3 minutes on 2 cores); with `--rounds R` one
process runs the scenarios R times over (DMRAY_RACE_ROUNDS), each round a run. Run n uses seed
`--seed + n`, so a failing run can be replayed alone with DMRAY_CHAOS_SEED set to its
seed (the delays then follow the same sequence in each process; the timing of the
machine still varies). The output of failed runs is kept in --log-dir. The table is
printed as runs end and the report file is rewritten after every run, so an interrupted
hunt keeps what it found.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_JITTER_MS = "DMRAY_CHAOS_JITTER_MS"  # as actors/chaos.py (not imported: no Ray here)
ENV_SEED = "DMRAY_CHAOS_SEED"
ENV_ROUNDS = "DMRAY_RACE_ROUNDS"  # as tests/scenarios/conftest.py


@dataclass
class Run:
    n: int
    seed: int
    ok: bool
    seconds: float
    summary: str  # pytest's last line, or why the run did not finish
    failed: list[str]  # test ids
    log: str  # where its output is kept ("" for a clean run)


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def pytest_command(args: argparse.Namespace) -> list[str]:
    cmd = [python(), "-m", "pytest", "tests/scenarios", "-q", "-rA", "-p", "no:cacheprovider"]
    if args.marker:
        cmd += ["-m", args.marker]
    if args.k:
        cmd += ["-k", args.k]
    if args.exitfirst:
        cmd.append("-x")
    return cmd + list(args.pytest_args or [])


_SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error|errors|skipped|deselected).*?)\s*=*$")


def run_once(n: int, seed: int, args: argparse.Namespace, log_dir: Path) -> list[Run]:
    """One pytest process: `args.rounds` runs of the scenarios (runs n, n+1, ...)."""
    env = dict(os.environ)
    env[ENV_JITTER_MS] = f"{args.jitter_ms:g}"
    env[ENV_SEED] = str(seed)
    env[ENV_ROUNDS] = str(args.rounds)
    env.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.monotonic()
    # Its own session: on a timeout the whole process group (pytest, Ray) is killed; the
    # MariaDB servers it leaves are reaped by the next run (testbed/mariadb.py).
    proc = subprocess.Popen(pytest_command(args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=args.timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        rc = None
    seconds = time.monotonic() - t0
    lines = out.splitlines()
    summary = next((m.group(1) for line in reversed(lines)
                    if (m := _SUMMARY.match(line.strip()))), "")
    if rc is None:
        summary = f"timed out after {args.timeout:.0f} s; {summary}".rstrip("; ")
    elif not summary:
        summary = f"exit code {rc}"
    failed = sorted({m.group(1) for line in lines
                     if (m := re.match(r"^(?:FAILED|ERROR) (\S+)", line))})
    log = ""
    if rc != 0:
        path = log_dir / f"run-{n:03d}-seed-{seed}.log"
        path.write_text(out)
        log = str(path)
    if args.rounds == 1:
        return [Run(n, seed, rc == 0, seconds, summary, failed, log)]
    # Rounds: each is a run, clean when its scenarios passed and none failed.
    passed = [m.group(1) for line in lines if (m := re.match(r"^PASSED (\S+)", line))]
    runs = []
    for r in range(1, args.rounds + 1):
        tag = f"round{r}]"
        ok_ids = [t for t in passed if t.endswith(tag) or f"-{tag}" in t]
        bad = [t for t in failed if t.endswith(tag) or f"-{tag}" in t]
        if not ok_ids and not bad:
            continue  # not reached (the process ended before)
        runs.append(Run(n + r - 1, seed, bool(ok_ids) and not bad,
                        seconds / args.rounds, f"{len(ok_ids)} passed, {len(bad)} failed "
                        f"(round {r} of process {n})", bad, log if bad else ""))
    if not runs:
        runs.append(Run(n, seed, False, seconds, summary, failed, log))
    return runs


def longest_streak(runs: list[Run]) -> int:
    best = cur = 0
    for r in runs:
        cur = cur + 1 if r.ok else 0
        best = max(best, cur)
    return best


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (with uncommitted changes)" if dirty else "")


def report(runs: list[Run], args: argparse.Namespace, started: dt.datetime,
           done: bool) -> str:
    passed = sum(r.ok for r in runs)
    total_s = sum(r.seconds for r in runs)
    lines = [
        "# Race hunt: the multi-source scenarios under randomized delays",
        "",
        f"- started {started:%Y-%m-%d %H:%M:%S}; {'finished' if done else 'in progress'}; "
        f"commit {git_rev()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        f"- each run: `{' '.join(['python', *pytest_command(args)[1:]])}` with "
        f"{ENV_JITTER_MS}={args.jitter_ms:g} and {ENV_SEED}=<seed>",
        f"- **{passed} of {len(runs)} runs passed**"
        + (f" (of {args.runs} planned)" if len(runs) != args.runs else "")
        + f"; longest streak of consecutive clean runs: **{longest_streak(runs)}**; "
        f"{total_s / 60:.1f} min in all",
        "",
        "| run | seed | result | seconds | pytest | failed tests |",
        "|---:|---:|---|---:|---|---|",
    ]
    for r in runs:
        failed = ", ".join(f"`{t.split('::')[-1]}`" for t in r.failed)
        if r.log:
            failed += f" (log: `{r.log}`)"
        lines.append(f"| {r.n} | {r.seed} | {'passed' if r.ok else '**FAILED**'} | "
                     f"{r.seconds:.0f} | {r.summary} | {failed} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50, help="how many runs (default 50)")
    ap.add_argument("--jitter-ms", type=float, default=50.0,
                    help="the longest delay at an actor call, ms (default 50)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of run 1 (run n: seed + n - 1); default: from the clock")
    ap.add_argument("--marker", default="race",
                    help="pytest -m expression (default: race; '' for every scenario)")
    ap.add_argument("-k", default="", help="pytest -k expression, to hunt fewer scenarios")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs per pytest process (default 1: a fresh process, servers and "
                         "Ray for every run); more saves their start-up")
    ap.add_argument("--stop-on-failure", action="store_true",
                    help="stop at the first failed run (default: go on and count)")
    ap.add_argument("--exitfirst", action="store_true",
                    help="pass -x: a run ends at its first failed test")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds before a run counts as hung and is killed (default 900)")
    ap.add_argument("--out", default="docs/race_hunt.md",
                    help="report file, rewritten after every run ('-': stdout only)")
    ap.add_argument("--log-dir", default="",
                    help="where the output of failed runs goes (default: a new temp dir)")
    ap.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = ap.parse_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")

    base = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    log_dir = Path(args.log_dir) if args.log_dir else Path(
        tempfile.mkdtemp(prefix="dmray-race-hunt-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    out = None if args.out == "-" else (ROOT / args.out if not Path(args.out).is_absolute()
                                        else Path(args.out))
    started = dt.datetime.now()
    print(f"race hunt: {args.runs} runs, delays up to {args.jitter_ms:g} ms, seeds "
          f"{base}..{base + args.runs - 1}; failed runs' output in {log_dir}"
          + (f"; report in {out}" if out else ""), flush=True)
    print(f"{'run':>4} {'seed':>8} {'result':>7} {'seconds':>8}  pytest", flush=True)
    runs: list[Run] = []
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    try:
        n = 1
        while n <= args.runs:
            got = run_once(n, base + n - 1, args, log_dir)
            runs += got
            for r in got:
                print(f"{r.n:>4} {r.seed:>8} {'passed' if r.ok else 'FAILED':>7} "
                      f"{r.seconds:>8.0f}  {r.summary}"
                      + (f"  [{', '.join(r.failed)}]" if r.failed else ""), flush=True)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(report(runs, args, started, done=False))
            if args.stop_on_failure and not all(r.ok for r in got):
                break
            n += max(1, len(got)) if args.rounds > 1 else 1
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    text = report(runs, args, started, done=True)
    if out is not None:
        out.write_text(text)
    passed = sum(r.ok for r in runs)
    print(f"\n{passed} of {len(runs)} runs passed; longest streak of consecutive clean runs: "
          f"{longest_streak(runs)}" + (f"; report: {out}" if out else ""), flush=True)
    if out is None:
        print(text)
    sys.exit(0 if runs and passed == len(runs) else 1)


if __name__ == "__main__":
    main()
