"""What users may name things and which directories requests may name (domain/names.py,
domain/paths.py): a corpus of names and of path escapes, each refused with a clear
message, and the names that must keep working (no database, no Ray)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.models import EnableRelayRequest, PurgeRelayRequest, Source
from domain.names import SOURCE_NAME_MAX, TASK_NAME_MAX
from domain.paths import PathOutsideRoots, resolve_inside
from domain.task_models import Task

BAD_NAMES = ["a/b", "../../x", "../../t", "<script>alert(1)</script>", "a\x00b", "a\nb",
             "a\rb", "a\tb", "a\x7fb", "a\x85b", "a\u2028b", " a", "a ", ".", "..", "a\\b",
             "/", "x/../y"]
# DM's contract: names in paths may hold any other character.
GOOD_NAMES = ["a", "1", "mysql-01", "s.1_2-3", "Src.A-b_c", "t-Ë!s`t", "src-Ë!s`t 'x\"%",
              "a b", "😀", ".hidden", "-x", "a;DROP TABLE t", "a%2Fb", "a?b#c"]


def _source(name: str) -> dict[str, object]:
    return {"source_name": name, "host": "h", "port": 3306, "user": "u"}


def _task(name: str, source: str = "s1", **extra: object) -> dict[str, object]:
    return {"name": name, "task_mode": "all",
            "target_config": {"host": "h", "port": 3306, "user": "u", "password": ""},
            "table_migrate_rule": [{"source": {"source_name": source, "schema": "a",
                                               "table": "*"}}],
            "source_config": {"source_conf": [{"source_name": source}]}, **extra}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_everywhere(name: str) -> None:
    with pytest.raises(ValidationError, match=r"source name .* not valid"):
        Source.model_validate(_source(name))
    with pytest.raises(ValidationError, match=r"task name .* not valid"):
        Task.model_validate(_task(name))
    with pytest.raises(ValidationError, match=r"source name .* not valid"):
        Task.model_validate(_task("t1", source=name))


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_pass(name: str) -> None:
    assert Source.model_validate(_source(name)).source_name == name
    assert Task.model_validate(_task(name, source=name)).name == name


def test_length_limits_fit_what_is_derived_from_a_name() -> None:
    assert TASK_NAME_MAX == 42 and len(f"{'t' * TASK_NAME_MAX}_loader_deferred_index") == 64
    Task.model_validate(_task("t" * TASK_NAME_MAX))
    Source.model_validate(_source("s" * SOURCE_NAME_MAX))
    with pytest.raises(ValidationError, match="43 characters long, at most 42"):
        Task.model_validate(_task("t" * (TASK_NAME_MAX + 1)))
    with pytest.raises(ValidationError, match="33 characters long, at most 32"):
        Source.model_validate(_source("s" * (SOURCE_NAME_MAX + 1)))
    huge = "x" * 10_000_000
    with pytest.raises(ValidationError) as info:
        Task.model_validate(_task(huge))
    assert len(str(info.value)) < 2000  # the message does not echo 10 MB back


def test_a_name_the_log_already_holds_stays_usable() -> None:
    task = Task.model_validate(_task("x/" * 50, source="a\nb"), context={"stored": True})
    assert task.name == "x/" * 50


@pytest.mark.parametrize("name", ["templates", "converters"])
def test_task_names_that_are_routes_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="another route"):
        Task.model_validate(_task(name))
    assert Source.model_validate(_source(name)).source_name == name


@pytest.mark.parametrize("value", ["../../../../x.000001", "/x.000001", "a/b.000001",
                                   "x.000001/../y.000001", "mysql-bin.000001\x00",
                                   "mysql-bin", ".000001", "a b.000001", "..\\x.000001",
                                   "mysql-bin.00000a"])
def test_binlog_file_names_have_no_directory(value: str) -> None:
    for model, extra in ((EnableRelayRequest, {}), (PurgeRelayRequest, {})):
        with pytest.raises(ValidationError, match="binlog file name"):
            model.model_validate({"relay_binlog_name": value, **extra})
    with pytest.raises(ValidationError, match="binlog file name"):
        Source.model_validate({**_source("s1"), "relay_config": {"relay_binlog_name": value}})
    with pytest.raises(ValidationError, match="binlog file name"):
        Task.model_validate({**_task("t1"), "source_config": {
            "source_conf": [{"source_name": "s1", "binlog_name": value}]}})


def test_binlog_file_names_that_pass() -> None:
    for value in ("mysql-bin.000001", "mariadb-bin.123456", "host_1-bin.1234567", ""):
        assert EnableRelayRequest.model_validate(
            {"relay_binlog_name": value}).relay_binlog_name == value


def test_bad_meta_schema_and_negative_numbers_are_refused() -> None:
    for meta in ("", "a" * 65, "a\x00b", "meta "):
        with pytest.raises(ValidationError, match="meta_schema"):
            Task.model_validate(_task("t1", meta_schema=meta))
    with pytest.raises(ValidationError, match="range_concurrency"):
        Task.model_validate({**_task("t1"), "source_config": {
            "full_migrate_conf": {"range_concurrency": -99},
            "source_conf": [{"source_name": "s1"}]}})
    for purge in ({"interval": 0}, {"interval": -1}, {"expires": -1}, {"remain_space": -5}):
        with pytest.raises(ValidationError, match="purge"):
            Source.model_validate({**_source("s1"), "purge": purge})


ESCAPES = ["../../etc", "../..", "/etc", "/", "relay/../../..", "a/../../b", "~",
           "//etc", "/tmp/../etc", "x\x00y"]


@pytest.mark.parametrize("given", ESCAPES)
def test_paths_leading_outside_the_roots_are_refused(tmp_path: Path, given: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(PathOutsideRoots, match=r"relay_dir|NUL"):
        resolve_inside("relay_dir", given, data, [str(data)])


def test_paths_inside_the_roots(tmp_path: Path) -> None:
    data, extra = tmp_path / "data", tmp_path / "backups"
    data.mkdir()
    extra.mkdir()
    roots = [str(data), str(extra)]
    assert resolve_inside("d", "./relay_log", data, roots) == data / "relay_log"
    assert resolve_inside("d", "relay/../relay2", data, roots) == data / "relay2"
    assert resolve_inside("d", str(extra / "dump1"), data, roots) == extra / "dump1"
    assert resolve_inside("d", str(data), data, roots) == data
    # A symbolic link inside the data dir that points out of it does not lead out.
    os.symlink("/etc", data / "out")
    with pytest.raises(PathOutsideRoots, match="resolves to /etc"):
        resolve_inside("d", "out/x", data, roots)
