"""Events of a source's own stream, owned by its source actor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from events.base import DomainEvent, event


def source_stream(name: str) -> str:
    return f"source:{name}"


class StoredSecurity(BaseModel):
    """TLS material as stored: the private key is encrypted like a password."""

    model_config = ConfigDict(frozen=True)
    ssl_ca_content: str = ""
    ssl_cert_content: str = ""
    ssl_key_content_enc: str = ""
    cert_allowed_cn: list[str] = []
    ssl_verify_identity: bool = False


class StoredPurge(BaseModel):
    model_config = ConfigDict(frozen=True)
    interval: int = 3600
    expires: int = 0
    remain_space: int = 15


class StoredRelayConfig(BaseModel):
    model_config = ConfigDict(frozen=True)
    enable_relay: bool = False
    relay_binlog_name: str = ""
    relay_binlog_gtid: str = ""
    relay_dir: str = "./relay_log"


class SourceSpec(BaseModel):
    """A source's configuration as the log keeps it; never holds a plain secret."""

    model_config = ConfigDict(frozen=True)
    source_name: str
    host: str
    port: int
    user: str
    password_enc: str
    enable_gtid: bool = False
    flavor: str = ""
    security: StoredSecurity | None = None
    purge: StoredPurge = StoredPurge()
    relay_config: StoredRelayConfig = StoredRelayConfig()


@event
class SourceCreated(DomainEvent):
    event_type = "source.created"
    request_id: str
    spec: SourceSpec
    enabled: bool = True


@event
class SourceUpdated(DomainEvent):
    event_type = "source.updated"
    spec: SourceSpec


@event
class SourceEnabled(DomainEvent):
    event_type = "source.enabled"


@event
class SourceDisabled(DomainEvent):
    event_type = "source.disabled"


@event
class SourceWorkerChanged(DomainEvent):
    """The worker that serves the source, as the coordinator decided ('' = unbound)."""

    event_type = "source.worker_changed"
    worker_name: str


@event
class SourceDeleted(DomainEvent):
    event_type = "source.deleted"
