"""The API's gate (serve_app/auth.py) and its tokens (domain/tokens.py), on a bare ASGI app:
who is let through, who gets 401 or 403, with DM's error body (no Ray, no database)."""

from __future__ import annotations

import base64

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from domain.tokens import accepted, digest_of, from_authorization, make_token, token_id_of
from serve_app.auth import AuthGate


def test_tokens_are_random_and_checked_by_digest() -> None:
    a, b = make_token(), make_token()
    assert a.token != b.token and a.token_id != b.token_id
    assert token_id_of(a.token) == a.token_id and a.digest == digest_of(a.token)
    live = {a.token_id: a.digest}
    assert accepted(a.token, live) and not accepted(b.token, live)
    forged = a.token[:-1] + ("A" if a.token[-1] != "A" else "B")
    assert not accepted(forged, live)
    for junk in ("", "dmr", "dmr_x_y", a.token + "x", a.token_id, " " + a.token):
        assert not accepted(junk, live)


@pytest.mark.parametrize("header,token", [
    ("Bearer tok", "tok"), ("bearer   tok ", "tok"), ("Bearer", None), ("Token tok", None),
    ("Basic " + base64.b64encode(b"any:tok").decode(), "tok"),
    ("Basic " + base64.b64encode(b"nopassword").decode(), None),
    ("Basic !!!", None), ("", None)])
def test_authorization_header_forms(header: str, token: str | None) -> None:
    assert from_authorization(header) == token


class Policy:
    def __init__(self) -> None:
        self.required = False
        self.digests: dict[str, str] = {}

    async def __call__(self) -> tuple[bool, dict[str, str]]:
        return self.required, self.digests


async def _ok(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
def policy() -> Policy:
    return Policy()


@pytest.fixture
def client(policy: Policy) -> httpx.AsyncClient:
    inner = Starlette(routes=[Route("/x", _ok, methods=["GET", "POST", "DELETE"])])
    app = AuthGate(inner, policy)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://api.local:8261")


async def test_open_without_tokens_on_loopback(client: httpx.AsyncClient) -> None:
    assert (await client.get("/x")).status_code == 200
    assert (await client.post("/x")).status_code == 200


async def test_token_matrix(client: httpx.AsyncClient, policy: Policy) -> None:
    tok, other = make_token(), make_token()
    for required, digests in ((True, {}), (False, {tok.token_id: tok.digest}),
                              (True, {tok.token_id: tok.digest})):
        policy.required, policy.digests = required, digests
        for method in ("GET", "POST", "DELETE"):
            for headers in ({}, {"Authorization": f"Bearer {other.token}"},
                            {"Authorization": "Bearer junk"}):
                r = await client.request(method, "/x", headers=headers)
                assert r.status_code == 401, (method, headers)
                body = r.json()
                assert body["error_code"] == 49401 and "token" in body["error_msg"]
                assert r.headers["www-authenticate"].startswith("Bearer")
            if digests:
                good = await client.request(method, "/x",
                                            headers={"Authorization": f"Bearer {tok.token}"})
                assert good.status_code == 200
                basic = base64.b64encode(f"u:{tok.token}".encode()).decode()
                assert (await client.request(method, "/x", headers={
                    "Authorization": f"Basic {basic}"})).status_code == 200


async def test_state_changing_requests_from_other_sites_are_refused(
        client: httpx.AsyncClient) -> None:
    evil = [{"Origin": "http://evil.example"}, {"Origin": "null"},
            {"Origin": "http://api.local:9999"}, {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site", "Origin": "http://api.local:8261"}]
    for headers in evil:
        for method in ("POST", "DELETE"):
            r = await client.request(method, "/x", headers={**headers,
                                                            "Content-Type": "text/plain"})
            assert r.status_code == 403 and r.json()["error_code"] == 49403, headers
        assert (await client.get("/x", headers=headers)).status_code == 200  # reads are safe
    same = {"Origin": "http://api.local:8261", "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/x", headers=same)).status_code == 200


async def test_no_policy_means_no_entry() -> None:
    """While the read model cannot be had (the coordinator restarting), refuse; the body is
    DM's, never a traceback."""
    async def broken() -> tuple[bool, dict[str, str]]:
        raise ConnectionError("coordinator gone")

    inner = Starlette(routes=[Route("/x", _ok)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AuthGate(inner, broken)),
                                 base_url="http://api.local") as c:
        r = await c.get("/x")
    assert r.status_code == 503 and r.json()["error_code"] == 49001
    assert "retry" in r.json()["error_msg"] and "Traceback" not in r.text
