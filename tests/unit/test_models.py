"""DM API models: strict scalars (as Go's JSON decoding), unknown fields ignored."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from domain.models import (
    CreateSourceRequest,
    Purge,
    RelayConfig,
    Source,
    UpdateSourceRequest,
    WorkerNameRequest,
)


def good() -> dict[str, Any]:
    return {"source_name": "mysql-01", "host": "127.0.0.1", "port": 3306, "user": "root",
            "password": "pw"}


def errors_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        Source.model_validate(data)
    return [(".".join(map(str, e["loc"])), e["type"]) for e in info.value.errors()]


def test_minimal_source_and_defaults() -> None:
    s = Source.model_validate(good())
    assert (s.source_name, s.host, s.port, s.user, s.password) == (
        "mysql-01", "127.0.0.1", 3306, "root", "pw")
    assert s.enable_gtid is False
    assert s.enable is None  # absent ≠ false: create treats absent as enabled
    assert s.security is None and s.purge is None and s.relay_config is None
    assert Source.model_validate({**good(), "password": None}).password is None
    no_pw = good()
    del no_pw["password"]
    assert Source.model_validate(no_pw).password is None


@pytest.mark.parametrize("field", ["source_name", "host", "port", "user"])
def test_required_fields(field: str) -> None:
    data = good()
    del data[field]
    assert errors_of(data) == [(field, "missing")]


@pytest.mark.parametrize("field", ["source_name", "host", "user"])
def test_required_strings_are_not_empty(field: str) -> None:
    assert errors_of({**good(), field: ""}) == [(field, "string_too_short")]


@pytest.mark.parametrize("value", ["3306", 3306.0, True, None, [3306]])
def test_port_must_be_an_integer(value: object) -> None:
    [(loc, _)] = errors_of({**good(), "port": value})
    assert loc == "port"


@pytest.mark.parametrize("value", [0, -1, 65536, 70000])
def test_port_range(value: int) -> None:
    [(loc, kind)] = errors_of({**good(), "port": value})
    assert loc == "port" and kind in ("greater_than_equal", "less_than_equal")


@pytest.mark.parametrize("value", [1, 65535])
def test_port_range_edges(value: int) -> None:
    assert Source.model_validate({**good(), "port": value}).port == value


@pytest.mark.parametrize(("field", "value"), [
    ("enable_gtid", "yes"), ("enable_gtid", "true"), ("enable_gtid", 1), ("enable", "false"),
    ("enable", 0), ("host", 127), ("user", b"root"), ("password", 123), ("flavor", 1),
    ("source_name", ["mysql-01"]),
])
def test_scalars_are_strict(field: str, value: object) -> None:
    [(loc, _)] = errors_of({**good(), field: value})
    assert loc == field


def test_booleans_accept_booleans() -> None:
    s = Source.model_validate({**good(), "enable_gtid": True, "enable": False})
    assert s.enable_gtid is True and s.enable is False


def test_unknown_fields_are_accepted_and_ignored() -> None:
    s = Source.model_validate({**good(), "case_sensitive": True, "from": {"x": 1}})
    assert "case_sensitive" not in s.model_dump()
    assert not hasattr(s, "case_sensitive")
    assert s.model_extra is None or s.model_extra == {}


def test_nested_models_are_strict_too() -> None:
    assert [loc for loc, _ in errors_of({**good(), "purge": {"interval": "60"}})] == [
        "purge.interval"]
    assert [loc for loc, _ in errors_of({**good(), "relay_config": {"enable_relay": "y"}})] == [
        "relay_config.enable_relay"]
    assert [loc for loc, _ in errors_of({**good(), "security": {"ssl_ca_content": "x"}})] == [
        "security.ssl_cert_content", "security.ssl_key_content"]
    assert Purge().model_dump() == {"interval": 3600, "expires": 0, "remain_space": 15}
    assert RelayConfig().relay_dir == "./relay_log"


def test_create_source_request_requires_source() -> None:
    with pytest.raises(ValidationError) as info:
        CreateSourceRequest.model_validate({"worker_name": "worker1"})
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("source",), "missing")]
    with pytest.raises(ValidationError):
        CreateSourceRequest.model_validate({"source": None})
    with pytest.raises(ValidationError):
        CreateSourceRequest.model_validate({"source": {**good(), "port": "3306"}})
    req = CreateSourceRequest.model_validate({"source": good(), "extra": 1})
    assert req.source.source_name == "mysql-01" and req.worker_name is None
    with pytest.raises(ValidationError):
        CreateSourceRequest.model_validate({"source": good(), "worker_name": 1})


def test_update_and_worker_name_requests() -> None:
    with pytest.raises(ValidationError):
        UpdateSourceRequest.model_validate({})
    assert UpdateSourceRequest.model_validate({"source": good()}).source.port == 3306
    with pytest.raises(ValidationError):
        WorkerNameRequest.model_validate({"worker_name": ""})
    with pytest.raises(ValidationError):
        WorkerNameRequest.model_validate({})
    assert WorkerNameRequest.model_validate({"worker_name": "worker1"}).worker_name == "worker1"


def test_strictness_holds_for_json_input() -> None:
    base = '{"source_name":"m","host":"h","user":"u","port":%s}'
    assert Source.model_validate_json(base % "3306").port == 3306
    with pytest.raises(ValidationError):
        Source.model_validate_json(base % '"3306"')
    with pytest.raises(ValidationError):
        Source.model_validate_json(base % "3306.0")
