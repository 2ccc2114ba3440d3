"""A Task and its stored form (`TaskSpec`): secrets sealed on the way in, opened for the
code that connects, masked in every response."""

from __future__ import annotations

import copy
from typing import Any

from domain.models import MASKED_PASSWORD
from domain.task_models import Task
from events.task import SECRET_FIELDS, TaskSpec, take_field
from mysqlkit import upstream
from storage.secrets import SecretBox


def sealed(task: Task, box: SecretBox, keep: TaskSpec | None = None) -> TaskSpec:
    """The Task as the log keeps it. A secret given as the mask (a GET sent back with PUT)
    keeps the one stored in `keep`."""
    doc = task.dump()
    out: dict[str, str] = {}
    for path in SECRET_FIELDS:
        plain = take_field(doc, path)
        if plain is None:
            continue
        if plain == MASKED_PASSWORD and keep is not None:
            if path in keep.sealed:
                out[path] = keep.sealed[path]
            elif path in keep.unsealed:
                out[path] = box.encrypt(keep.unsealed[path])
        elif plain:
            out[path] = box.encrypt(plain)
    return TaskSpec(document=doc, sealed=out)


def resealed(spec: TaskSpec, box: SecretBox) -> TaskSpec:
    """The same spec with every secret encrypted with the box's first key (a key
    rotation), secrets an earlier version kept in the clear sealed too."""
    out = {path: box.rotate(enc) for path, enc in spec.sealed.items()}
    out.update({path: box.encrypt(plain) for path, plain in spec.unsealed.items()})
    return TaskSpec(document=spec.document, sealed=out)


def opened(spec: TaskSpec, box: SecretBox) -> Task:
    """The Task with its secrets, for the code that connects to the target."""
    secrets = {**spec.unsealed, **{p: box.decrypt(enc) for p, enc in spec.sealed.items()}}
    # Stored: checked when it was created (names an earlier version took stay usable).
    return Task.model_validate(_with_secrets(spec.document, lambda path: secrets.get(path, "")),
                               context={"stored": True})


def masked(spec: TaskSpec) -> dict[str, Any]:
    """The stored Task as responses show it: every secret masked, as for sources."""
    return _with_secrets(spec.document, lambda _: MASKED_PASSWORD)


def masked_task(task: Task) -> dict[str, Any]:
    """A Task given in a request, as a response may show it (the converters)."""
    doc = task.dump()
    for path in SECRET_FIELDS:
        take_field(doc, path)
    return _with_secrets(doc, lambda _: MASKED_PASSWORD)


def masks_secrets(task: Task) -> bool:
    """Whether a Task sent in carries the mask in place of a secret (a GET sent back)."""
    doc = task.dump()
    return any(_get(doc, path) == MASKED_PASSWORD for path in SECRET_FIELDS)


def with_stored_secrets(task: Task, stored: Task) -> Task:
    """`task` with each masked secret replaced by the one of `stored`."""
    doc, old = task.dump(), stored.dump()
    for path in SECRET_FIELDS:
        if _get(doc, path) == MASKED_PASSWORD:
            _put(doc, path, _get(old, path) or "")
    return Task.model_validate(doc, context={"stored": True})


def same_task(a: TaskSpec, b: TaskSpec, box: SecretBox) -> bool:
    """Whether two specs hold the same task (one secret sealed twice gives two tokens)."""
    return a.document == b.document and opened(a, box) == opened(b, box)


def target_conn(task: Task) -> upstream.ConnConfig:
    """How to reach the task's target, TLS included."""
    tc = task.target_config
    sec = tc.security
    return upstream.ConnConfig(
        host=tc.host, port=tc.port, user=tc.user, password=tc.password,
        ssl_ca=sec.ssl_ca_content or None if sec else None,
        ssl_cert=sec.ssl_cert_content or None if sec else None,
        ssl_key=sec.ssl_key_content or None if sec else None,
        ssl_verify_identity=bool(sec and sec.ssl_verify_identity))


def _with_secrets(document: dict[str, Any], value: Any) -> dict[str, Any]:
    """The document with each secret field its parent has set to value(path): the
    password always, a TLS key where its `security` is given."""
    doc = copy.deepcopy(document)
    for path in SECRET_FIELDS:
        parent = path.rsplit(".", 1)[0]
        if path == "target_config.password" or _get(doc, parent) is not None:
            _put(doc, path, value(path))
    return doc


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _put(doc: dict[str, Any], path: str, value: str) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
