"""First-hour friction over the HTTP API: a body sent without the JSON content type (as
the README's curl lines once did) gets an error that says so; empty checking items are
absent; disabling a source pauses its subtasks, and enabling it resumes them."""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.api import assert_dm_error, drop_tagged, q, source_body
from tests.support.tasks import incr_body, master_pos, rows_of, task_body, wait_synced

ROOT = Path(__file__).resolve().parents[2]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends
JSON = {"Content-Type": "application/json"}
HINT = ("request body must be a JSON object; "
        "send it with the header Content-Type: application/json")


# --- request bodies --------------------------------------------------------------------

def test_body_without_json_content_type_says_what_is_wrong(api: httpx.Client) -> None:
    # The README's curl lines without -H 'Content-Type: application/json' (start with a
    # start_time, relay enable/purge/disable): the body is valid JSON, the header is not.
    for path, body in (
            ("/tasks/no-such-task/start", '{"start_time": "2026-11-27 10:00:00"}'),
            ("/sources/no-such-source/relay/enable", "{}"),
            ("/sources/no-such-source/relay/purge", '{"relay_binlog_name": "mysql-bin.1"}'),
            ("/sources/no-such-source/relay/disable", "{}"),
            ("/sources", '{"source": {"source_name": "x"}}')):
        r = api.post(path, content=body, headers=FORM)
        err = assert_dm_error(r, 49001, HINT, "application/x-www-form-urlencoded")
        assert "valid dictionary" not in err["error_msg"], err
    r = api.post("/tasks/no-such-task/start", content='{"remove_meta": false}',
                 headers={"Content-Type": "text/plain"})
    assert_dm_error(r, 49001, HINT, "it came with Content-Type: text/plain")

    # JSON, but not an object; not JSON at all; a required body missing.
    r = api.post("/sources/no-such-source/relay/purge", content="[1, 2]", headers=JSON)
    assert_dm_error(r, 49001, "request body must be a JSON object, not an array")
    r = api.post("/sources/no-such-source/relay/purge", content='{"relay_binlog_name": ',
                 headers=JSON)
    assert_dm_error(r, 49001, "request body is not valid JSON")
    r = api.post("/sources/no-such-source/relay/purge")
    assert_dm_error(r, 49001, "request body is missing", "Content-Type: application/json")

    # A field error still names the field; DM's contract: no body and no Content-Type is
    # an empty object, so a start without a body is no validation error at all.
    r = api.post("/tasks", json={"task": {"name": "x"}})
    assert_dm_error(r, 49001, "request body is invalid: task.")
    assert_dm_error(api.post("/tasks/no-such-task/start"), 46018, "no-such-task")
    # And with the header, the same start body passes validation.
    r = api.post("/tasks/no-such-task/start", content='{"start_time": "2026-11-27 10:00:00"}',
                 headers=JSON)
    assert_dm_error(r, 46018, "no-such-task")


def _readme_commands() -> list[str]:
    """The shell commands of README.md's code blocks, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    commands: list[str] = []
    for block in re.findall(r"```(?:bash|shell|sh)\n(.*?)```", text, re.S):
        current = ""
        for line in block.splitlines():
            current += line.rstrip().removesuffix("\\") + " "
            if line.rstrip().endswith("\\"):
                continue
            # a multi-line quoted body: the command goes on until the quotes close
            try:
                shlex.split(current, comments=True)
            except ValueError:
                continue
            commands.append(current.strip())
            current = ""
    return commands


def test_readme_curl_lines_send_json_with_its_content_type() -> None:
    curls = [c for c in _readme_commands() if c.startswith("curl")]
    assert len(curls) > 10, curls
    with_body = 0
    for cmd in curls:
        args = shlex.split(cmd, comments=True)
        if not {"-d", "--data", "--data-raw"} & set(args):
            continue
        with_body += 1
        headers = [args[i + 1] for i, a in enumerate(args) if a == "-H"]
        assert "Content-Type: application/json" in headers, cmd
    assert with_body >= 6


# --- ignore_checking_items ------------------------------------------------------------

@pytest.fixture
def tagged(api: httpx.Client, source1: MariaDBServer,
           target: MariaDBServer) -> Iterator[dict[str, str]]:
    """A source schema with a table, its source registered; everything named `..._<tag>`."""
    tag = "_fr" + uuid.uuid4().hex[:6]
    schema, src = f"fr{tag}", f"fsrc{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (1, 'one'), (2, 'two')")
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    yield {"tag": tag, "schema": schema, "tschema": f"frc{tag}", "source": src}
    drop_tagged(api, tag, source1, target)


def test_empty_checking_items_are_absent(api: httpx.Client, tagged: dict[str, str],
                                         target: MariaDBServer) -> None:
    name = f"chk{tagged['tag']}"
    body = task_body(name, target, [tagged["source"]], tagged["schema"], tagged["tschema"])
    body["task"]["ignore_checking_items"] = ["version", ""]
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["task"]["ignore_checking_items"] == ["version"]
    assert api.get(f"/tasks/{q(name)}").json()["ignore_checking_items"] == ["version"]

    got = api.get(f"/tasks/{q(name)}").json()
    got["ignore_checking_items"] = ["", "  ", "version"]
    r = api.put(f"/tasks/{q(name)}", json={"task": got})
    assert r.status_code == 200, r.text
    assert r.json()["task"]["ignore_checking_items"] == ["version"]

    # Only blanks: nothing is skipped, and the precheck (check_result) still runs.
    got["ignore_checking_items"] = [""]
    r = api.put(f"/tasks/{q(name)}", json={"task": got})
    assert r.status_code == 200, r.text
    assert r.json()["task"]["ignore_checking_items"] == []
    assert r.json()["check_result"]

    # The converter (task <-> DM task file) drops them too.
    body["task"]["ignore_checking_items"] = ["", "version"]
    r = api.post("/tasks/converters", json={"task": body["task"]})
    assert r.status_code == 200, r.text
    assert r.json()["task"]["ignore_checking_items"] == ["version"]

    # A name that is not a checking item is still refused.
    got["ignore_checking_items"] = ["version", "", "nope"]
    assert_dm_error(api.put(f"/tasks/{q(name)}", json={"task": got}), 20003,
                    "checking item nope is not supported")


# --- source disable / enable ---------------------------------------------------------

def _status(api: httpx.Client, task: str) -> dict[str, object]:
    [st] = api.get(f"/tasks/{q(task)}/status").json()["data"]
    return dict(st)


def test_disable_source_pauses_its_subtasks_and_enable_resumes(
        api: httpx.Client, tagged: dict[str, str], source1: MariaDBServer,
        target: MariaDBServer) -> None:
    s, ts, src = tagged["schema"], tagged["tschema"], tagged["source"]
    target.execute(f"CREATE DATABASE `{ts}`")  # the schema exists before the position
    pos = master_pos(source1)
    source1.execute(f"CREATE TABLE `{s}`.u (id INT PRIMARY KEY, v VARCHAR(20))")
    source1.execute(f"INSERT INTO `{s}`.u VALUES (1, 'a'), (2, 'b')")
    name = f"dis{tagged['tag']}"
    body = incr_body(name, target, {src: pos}, s, ts)
    body["task"]["table_migrate_rule"][0]["source"]["table"] = "u"
    assert api.post("/tasks", json=body).status_code == 201
    # A second task of the source, created and never started: it stays Stopped.
    idle = f"idle{tagged['tag']}"
    assert api.post("/tasks", json=task_body(idle, target, [src], s, ts + "x")
                    ).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200

    def rows_match() -> None:
        assert rows_of(target, ts, "u") == rows_of(source1, s, "u")

    wait_synced(api, name, rows_match)

    # Disable: the subtask is Paused when the call answers, and replicates nothing more.
    assert api.post(f"/sources/{q(src)}/disable").status_code == 200
    st = _status(api, name)
    assert st["stage"] == "Paused" and st["unit"] == "Sync", st
    assert not st.get("error_msg"), st
    assert _status(api, idle)["stage"] == "Stopped"
    assert api.get(f"/sources/{q(src)}").json()["enable"] is False
    assert [t["name"] for t in api.get("/tasks", params={"stage": "Running"}).json()["data"]
            if t["name"] in (name, idle)] == []
    source1.execute(f"INSERT INTO `{s}`.u VALUES (3, 'while disabled')")
    time.sleep(2.0)
    assert (3, "while disabled") not in rows_of(target, ts, "u")
    assert _status(api, name)["stage"] == "Paused"
    # A disabled source's task cannot start (38058); disabling twice is a no-op.
    assert_dm_error(api.post(f"/tasks/{q(name)}/start", json={}), 38058, src)
    assert api.post(f"/sources/{q(src)}/disable").status_code == 200
    assert _status(api, name)["stage"] == "Paused"

    # Enable: the paused subtask runs again from its checkpoint (the contract: "resume all
    # its subtasks"); the never-started task stays Stopped.
    assert api.post(f"/sources/{q(src)}/enable").status_code == 200
    assert _status(api, name)["stage"] == "Running"
    assert _status(api, idle)["stage"] == "Stopped"
    assert api.get(f"/sources/{q(src)}").json()["enable"] is True
    wait_synced(api, name, rows_match)
