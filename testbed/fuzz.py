"""Schemathesis against a running server's dm.json, for the conformance test and the
long fuzz run (bench/fuzz_api.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


def run_schemathesis(base_url: str, report: Path, max_examples: int, max_time: int,
                     phases: str = "coverage,fuzzing", seed: int = 1,
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One run: every operation dm.json lists, requests generated from it, each answer
    checked against it (status code, content type, body schema) and for a 5xx. Returns
    schemathesis's JSON report, with its console output under "_stdout"."""
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is a test dependency (pyproject: [test])"
    extra = [a for k, v in (headers or {}).items() for a in ("-H", f"{k}: {v}")]
    proc = subprocess.run(
        [exe, "run", f"{base_url}/api/v1/dm.json", "--checks", CHECKS, "--phases", phases,
         "-n", str(max_examples), "--no-shrink", "--seed", str(seed), "--workers", "1",
         "--request-timeout", "30", "--max-time", str(max_time), "--no-color",
         "--report", "json", "--report-json-path", str(report), *extra],
        capture_output=True, text=True, timeout=max_time + 120)
    if not report.exists():
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    out: dict[str, Any] = json.loads(report.read_text())
    out["_stdout"] = proc.stdout
    return out
