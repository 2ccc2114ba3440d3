"""The long fuzz of the API against its own dm.json (the CI test runs a bounded one):
a fresh `dmray serve`, then schemathesis's coverage, fuzzing and stateful phases over
every operation, each answer checked for a 5xx and against dm.json (status code, content
type, body schema). Prints the figures for docs/benchmarks.md.

    .venv/bin/python bench/fuzz_api.py --max-examples 10 --max-time 600
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import start_server, stop_server, wait_ready  # noqa: E402
from testbed.fuzz import run_schemathesis  # noqa: E402
from testbed.ports import free_port  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-examples", type=int, default=10)
    ap.add_argument("--max-time", type=int, default=600)
    ap.add_argument("--phases", default="coverage,fuzzing,stateful")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dmray-fuzz-") as tmp:
        proc = start_server(port, f"{tmp}/data", {"XDG_CONFIG_HOME": f"{tmp}/config"})
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base)
            r = run_schemathesis(base, Path(tmp) / "report.json", args.max_examples,
                                 args.max_time, phases=args.phases, seed=args.seed)
        finally:
            stop_server(proc)
    cases = r.get("test_cases", {})
    print(r["_stdout"][-4000:])
    print(f"operations tested: {r['operations']['tested']} of {r['operations']['total']}; "
          f"test cases: {cases.get('generated')}; with failures: "
          f"{cases.get('with_failures')}; unique failures: {cases.get('unique_failures')}; "
          f"errors: {len(r.get('errors') or [])}; seed {args.seed}; phases {args.phases}")


if __name__ == "__main__":
    main()
