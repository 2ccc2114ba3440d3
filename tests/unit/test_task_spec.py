"""A Task's stored form: secrets sealed out of the document, opened, masked, and kept
when a response is sent back with its masks (no database, no Ray)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.fernet import Fernet

from actors.task_spec import (
    masked,
    masked_task,
    masks_secrets,
    opened,
    same_task,
    sealed,
    with_stored_secrets,
)
from domain.task_models import Task
from events.task import TaskSpec
from storage.secrets import SecretBox

PASSWORD, KEY, FULL_KEY = "tgt-pw-Ë", "-----PRIVATE KEY one-----", "-----PRIVATE KEY two-----"


def _task(**target: Any) -> Task:
    return Task.model_validate({
        "name": "t1", "task_mode": "all",
        "target_config": {"host": "db", "port": 3306, "user": "u", "password": PASSWORD,
                          **target},
        "table_migrate_rule": [{"source": {"source_name": "s1", "schema": "a", "table": "*"}}],
        "source_config": {
            "full_migrate_conf": {"security": {"ssl_ca_content": "CA2", "ssl_cert_content": "",
                                               "ssl_key_content": FULL_KEY}},
            "source_conf": [{"source_name": "s1"}]}})


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


SEC = {"security": {"ssl_ca_content": "CA", "ssl_cert_content": "CERT",
                    "ssl_key_content": KEY}}


def test_sealed_spec_holds_no_plain_secret_and_opens_to_the_task(box: SecretBox) -> None:
    task = _task(**SEC)
    spec = sealed(task, box)
    stored = orjson.dumps(spec.model_dump())
    for secret in (PASSWORD, KEY, FULL_KEY):
        assert secret.encode() not in stored
    assert set(spec.sealed) == {"target_config.password",
                                "target_config.security.ssl_key_content",
                                "source_config.full_migrate_conf.security.ssl_key_content"}
    assert spec.document["target_config"]["security"] == {"ssl_ca_content": "CA",
                                                          "ssl_cert_content": "CERT"}
    assert opened(spec, box) == task
    assert spec.sources == ["s1"] and spec.task_mode == "all" and spec.name == "t1"


def test_masked_shows_every_secret_as_the_mask(box: SecretBox) -> None:
    for task in (_task(**SEC), _task()):
        for shown in (masked(sealed(task, box)), masked_task(task)):
            text = orjson.dumps(shown).decode()
            for secret in (PASSWORD, KEY, FULL_KEY):
                assert secret not in text
            assert shown["target_config"]["password"] == "******"
            assert ("security" in shown["target_config"]) == (task.target_config.security
                                                              is not None)
            Task.model_validate(shown)  # still a valid Task


def test_a_masked_task_sent_back_keeps_the_stored_secrets(box: SecretBox) -> None:
    task = _task(**SEC)
    spec = sealed(task, box)
    back = Task.model_validate(masked(spec))
    assert masks_secrets(back) and not masks_secrets(task)
    again = sealed(back, box, keep=spec)
    assert opened(again, box) == task and same_task(again, spec, box)
    assert with_stored_secrets(back, task) == task
    changed = sealed(back.model_copy(update={"on_duplicate": "error"}), box, keep=spec)
    assert not same_task(changed, spec, box)
    # Without a stored one to keep, the mask is not taken for a password.
    assert opened(sealed(back, box), box).target_config.password == "******"


def test_a_key_version_1_kept_in_the_clear_is_sealed_on_the_next_write(box: SecretBox) -> None:
    doc = masked(sealed(_task(**SEC), box))
    old = TaskSpec(document={**doc, "target_config": {
        k: v for k, v in doc["target_config"].items() if k != "password"}},
        sealed={"target_config.password": box.encrypt(PASSWORD)},
        unsealed={"target_config.security.ssl_key_content": KEY})
    old.document["target_config"]["security"].pop("ssl_key_content")
    old.document["source_config"]["full_migrate_conf"]["security"].pop("ssl_key_content")
    assert opened(old, box).target_config.security.ssl_key_content == KEY  # type: ignore[union-attr]
    new = sealed(Task.model_validate(masked(old)), box, keep=old)
    assert not new.unsealed and "target_config.security.ssl_key_content" in new.sealed
    assert opened(new, box).target_config.security.ssl_key_content == KEY  # type: ignore[union-attr]


def test_stored_names_stay_usable_but_new_ones_are_checked(box: SecretBox) -> None:
    spec = sealed(_task(), box)
    legacy = spec.model_copy(update={"document": {**spec.document, "name": "x" * 100}})
    assert opened(legacy, box).name == "x" * 100
    with pytest.raises(ValueError, match="at most 42"):
        Task.model_validate({**masked(legacy)})
