"""A task target's secrets (its password and TLS private key) sealed in the event log,
masked in every response (tasks, templates, converters), kept on a GET-then-PUT round trip
and still there for the code that connects to the target; `dmray secrets rotate` seals
every stored secret again with a new key."""

from __future__ import annotations

import asyncio
import glob
import uuid
from pathlib import Path
from typing import Any

import httpx
import ray

import events.source as es
from actors.config import NAMESPACE
from storage.eventstore import EventStore
from storage.secrets import SecretBox, read_keys
from testbed.mariadb import MariaDBServer
from tests.support.api import dmray_cli, q, source_body
from tests.support.fixtures_ray import DMServer
from tests.support.tasks import task_body


def _keyed_task(prefix: str, target: MariaDBServer) -> tuple[str, str, str, dict[str, Any]]:
    """(source name, task name, TLS key, task body): a task whose target has a TLS key."""
    tag = uuid.uuid4().hex[:6]
    src, name = f"{prefix}-{tag}", f"{prefix}task-{tag}"
    key = f"-----BEGIN PRIVATE KEY-----{uuid.uuid4().hex}"
    body = task_body(name, target, [src], f"s_{tag}", f"t_{tag}")["task"]
    security = {"ssl_ca_content": "CA-PEM", "ssl_cert_content": "CERT-PEM",
                "ssl_key_content": key}
    return src, name, key, {**body, "target_config": {**body["target_config"],
                                                      "security": security},
                            "ignore_checking_items": ["all"]}


def test_target_secrets_are_sealed_masked_and_kept(api: httpx.Client, source1: MariaDBServer,
                                                   target: MariaDBServer,
                                                   dm_server: DMServer) -> None:
    src, name, key, body = _keyed_task("sec", target)
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    secrets = (key, target.password)
    responses: list[httpx.Response] = []
    try:
        responses.append(r := api.post("/tasks/templates", json=body))
        assert r.status_code == 201, r.text
        responses += [api.get("/tasks/templates"), api.get(f"/tasks/templates/{q(name)}")]
        responses.append(r := api.post("/tasks", json={"task": body}))
        assert r.status_code == 201, r.text
        responses += [api.get("/tasks"), api.get(f"/tasks/{q(name)}"),
                      api.get("/tasks", params={"with_status": True})]
        shown = api.get(f"/tasks/{q(name)}").json()
        assert shown["target_config"]["password"] == "******"
        assert shown["target_config"]["security"]["ssl_key_content"] == "******"
        assert shown["target_config"]["security"]["ssl_ca_content"] == "CA-PEM"

        # GET, then PUT what it gave: the masks keep the stored secrets.
        shown.pop("status_list", None)
        shown["on_duplicate"] = "replace"
        responses.append(r := api.put(f"/tasks/{q(name)}", json={"task": shown}))
        assert r.status_code == 200, r.text
        responses.append(r := api.put(f"/tasks/templates/{q(name)}",
                                      json=api.get(f"/tasks/templates/{q(name)}").json()))
        assert r.status_code == 200, r.text
        actor = ray.get_actor(f"task/{name}", namespace=NAMESPACE)
        model = ray.get(actor.task_model.remote())
        assert model.on_duplicate == "replace"
        assert model.target_config.password == target.password
        assert model.target_config.security.ssl_key_content == key
        imp = api.post("/tasks/templates/import", json={"overwrite": True})
        assert imp.status_code == 202 and name in imp.json()["success_task_list"]
        responses.append(api.get(f"/tasks/templates/{q(name)}"))

        # The converters show the masks in both directions.
        responses.append(conv := api.post("/tasks/converters", json={"task": body}))
        assert conv.status_code == 200, conv.text
        assert conv.json()["task"]["target_config"]["password"] == "******"
        yaml_in = conv.json()["task_config_file"].replace("******", target.password)
        responses.append(back := api.post("/tasks/converters",
                                          json={"task_config_file": yaml_in}))
        assert back.status_code == 200, back.text
        assert back.json()["task"]["target_config"]["password"] == "******"
        for resp in responses:
            for secret in secrets:
                assert secret not in resp.text, resp.request.url
        for path in glob.glob(f"{dm_server.data_dir}/events.sqlite3*"):
            with open(path, "rb") as f:
                stored = f.read()
            for secret in secrets:
                assert secret.encode() not in stored, path
    finally:
        api.delete(f"/tasks/{q(name)}", params={"force": True})
        api.delete(f"/tasks/templates/{q(name)}")
        api.delete(f"/sources/{q(src)}", params={"force": True})


def _sealed_in_log(store_url: str, stream: str) -> list[str]:
    """Every token the last event of `stream` holds for a secret."""
    async def read() -> list[str]:
        store = EventStore(store_url)
        try:
            last = (await store.read_stream(stream))[-1].event
        finally:
            await store.close()
        if isinstance(last, es.SourceUpdated | es.SourceCreated):
            return [last.spec.password_enc]
        spec = last.task  # type: ignore[attr-defined]
        return list(spec.sealed.values())
    return asyncio.run(read())


def test_key_rotation_reseals_every_secret(api: httpx.Client, source1: MariaDBServer,
                                           target: MariaDBServer,
                                           dm_server: DMServer) -> None:
    src, name, key, body = _keyed_task("rot", target)
    key_file = Path(dm_server.cfg.secret_key_file)
    old = read_keys(key_file)
    try:
        assert api.post("/sources", json=source_body(source1, src)).status_code == 201
        assert api.post("/tasks", json={"task": body}).status_code == 201
        assert api.post("/tasks/templates", json=body).status_code == 201
        address = ray.get_runtime_context().gcs_address
        r = dmray_cli("secrets", "rotate", "--address", address)
        assert r.returncode == 0, r.stderr
        assert "re-sealed" in r.stderr and "1 templates" in r.stderr
        [new] = read_keys(key_file)
        assert new not in old
        only_new = SecretBox(new)
        for stream in (f"source:{src}", f"task:{name}"):
            tokens = _sealed_in_log(dm_server.cfg.store_url, stream)
            assert tokens and all(only_new.decrypt(t) for t in tokens), stream
        # Actors started again read the key file, which holds the new key alone.
        for actor_name in (f"source/{src}", f"task/{name}"):
            ray.kill(ray.get_actor(actor_name, namespace=NAMESPACE), no_restart=False)
        conn = ray.get(ray.get_actor(f"source/{src}", namespace=NAMESPACE)
                       .conn_config.remote())
        assert conn.password == source1.password
        model = ray.get(ray.get_actor(f"task/{name}", namespace=NAMESPACE)
                        .task_model.remote())
        assert model.target_config.password == target.password
        assert model.target_config.security.ssl_key_content == key
        assert api.get(f"/tasks/templates/{q(name)}").status_code == 200
    finally:
        api.delete(f"/tasks/{q(name)}", params={"force": True})
        api.delete(f"/tasks/templates/{q(name)}")
        api.delete(f"/sources/{q(src)}", params={"force": True})
