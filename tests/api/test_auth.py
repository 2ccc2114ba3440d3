"""Authentication through the real API (Ray Serve, HAProxy, the coordinator's read model):
every route refuses a request without a token, with a wrong one and with a revoked one
once a token exists; a good one passes; a revocation takes effect at once; cross-site
writes are refused; `dmray serve --host 0.0.0.0` does not start without a token; the CLI
creates, lists and revokes tokens."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray

from domain.tokens import make_token
from serve_app.app import API_PREFIX, app
from tests.support.api import dmray_cli
from tests.support.fixtures_ray import DMServer


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every API operation dm.json lists, and the documents themselves;
    path parameters filled with a name."""
    out = [("GET", "/dm.json"), ("GET", "/docs")]
    for path, ops in app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x1", path)[len(API_PREFIX):]
        out += [(method.upper(), concrete) for method in sorted(ops)]
    return out


ROUTES = _routes()


def _wait(cond: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.05)


@pytest.fixture
def token(dm_server: DMServer, api: httpx.Client) -> Iterator[str]:
    """A live token for the test; every token is revoked after it, so that the session's
    other tests find the loopback server open again."""
    new = make_token()
    ray.get(dm_server.coordinator.create_token.remote(new.token_id, "auth-test", new.digest))
    _wait(lambda: api.get("/sources").status_code == 401, "auth enforced")
    try:
        yield new.token
    finally:
        for t in ray.get(dm_server.coordinator.list_tokens.remote()):
            ray.get(dm_server.coordinator.revoke_token.remote(t["token_id"]))
        _wait(lambda: api.get("/sources").status_code == 200, "auth lifted")


def test_the_route_list_covers_the_api() -> None:
    assert len(ROUTES) >= 40
    assert ("DELETE", "/sources/x1") in ROUTES and ("GET", "/dm.json") in ROUTES


def test_every_route_needs_a_good_token(api: httpx.Client, token: str,
                                        dm_server: DMServer) -> None:
    wrong = make_token().token
    refusals = 0
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": f"Bearer {wrong}"},
                        {"Authorization": "Bearer not-a-token"},
                        {"Authorization": f"Basic {token}"}):
            r = api.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.json()["error_code"] == 49401
            refusals += 1
    good = {"Authorization": f"Bearer {token}"}
    for method, path in ROUTES:
        if method == "GET":
            r = api.request(method, path, headers=good)
            assert r.status_code != 401 and r.status_code < 500, (path, r.status_code)
    assert api.get("/sources", headers=good).status_code == 200
    # Revoked: refused from the next request on (the replica follows the read model),
    # while another token keeps working.
    [tid] = [t["token_id"] for t in ray.get(dm_server.coordinator.list_tokens.remote())]
    keeper = make_token()
    ray.get(dm_server.coordinator.create_token.remote(keeper.token_id, "keeper",
                                                      keeper.digest))
    assert ray.get(dm_server.coordinator.revoke_token.remote(tid)) == [tid]
    _wait(lambda: api.get("/sources", headers=good).status_code == 401, "revoked")
    assert api.get("/sources", headers={
        "Authorization": f"Bearer {keeper.token}"}).status_code == 200
    assert refusals == 4 * len(ROUTES)


def test_cross_site_writes_are_refused(api: httpx.Client) -> None:
    for method, path in ROUTES:
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            r = api.request(method, path, content=b"{}", headers={
                "Origin": "http://evil.example", "Content-Type": "text/plain"})
            assert r.status_code == 403, (method, path, r.status_code)
            assert r.json()["error_code"] == 49403
    assert api.get("/sources", headers={"Origin": "http://evil.example"}).status_code == 200


def test_serve_beyond_loopback_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    started = time.monotonic()
    r = dmray_cli("serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0",
               "--port", "1")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "dmray token create" in r.stderr and "0.0.0.0" in r.stderr
    assert time.monotonic() - started < 60  # refused before Ray starts


def test_token_cli_create_list_revoke(dm_server: DMServer, api: httpx.Client) -> None:
    address = ray.get_runtime_context().gcs_address
    try:
        made = dmray_cli("token", "create", "--name", "ci-bot", "--address", address)
        assert made.returncode == 0, made.stderr
        tok = made.stdout.strip()
        assert tok.startswith("dmr_") and tok not in made.stderr
        _wait(lambda: api.get("/sources").status_code == 401, "auth enforced")
        assert api.get("/sources", headers={"Authorization": f"Bearer {tok}"}).status_code \
            == 200
        listed = dmray_cli("token", "list", "--address", address)
        assert listed.returncode == 0 and "ci-bot" in listed.stdout and tok not in listed.stdout
        bad = dmray_cli("token", "create", "--name", "bad/name", "--address", address)
        assert bad.returncode == 1 and "token name" in bad.stderr
        gone = dmray_cli("token", "revoke", "ci-bot", "--address", address)
        assert gone.returncode == 0, gone.stderr
        _wait(lambda: api.get("/sources").status_code == 200, "auth lifted")
        assert dmray_cli("token", "revoke", "ci-bot", "--address", address).returncode == 1
    finally:
        for t in ray.get(dm_server.coordinator.list_tokens.remote()):
            ray.get(dm_server.coordinator.revoke_token.remote(t["token_id"]))
