"""dm.json tells the truth: schemathesis generates requests for every operation from the
document and checks each answer against it (status code declared, content type, body
schema) and that none is a server error. Bounded here (CI); `bench/fuzz_api.py` runs the
long version and docs/benchmarks.md has its figures."""

from __future__ import annotations

from pathlib import Path

import httpx

from testbed.fuzz import run_schemathesis
from tests.support.api import q
from tests.support.fixtures_ray import DMServer


def test_every_answer_is_what_dm_json_says(dm_server: DMServer, api: httpx.Client,
                                           tmp_path: Path) -> None:
    templates = {t["name"] for t in api.get("/tasks/templates").json()["data"]}
    topology = api.get("/cluster/info").json().get("topology")
    try:
        result = run_schemathesis(dm_server.base_url, tmp_path / "report.json",
                                  max_examples=2, max_time=15)
    finally:
        # Generated templates and topologies are valid input: take them out again.
        for t in api.get("/tasks/templates").json()["data"]:
            if t["name"] not in templates:
                api.delete(f"/tasks/templates/{q(t['name'])}")
        if topology is not None:
            api.put("/cluster/info", json=topology)
    failures = result.get("failures") or []
    assert not failures, result["_stdout"][-6000:]
    assert not result.get("errors"), result["_stdout"][-6000:]
    assert result["operations"]["tested"] >= 40, result["operations"]
