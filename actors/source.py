"""The source actor: owns one source's stream and talks to its upstream server."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import ray

from actors.chaos import with_jitter
from actors.config import RuntimeConfig
from actors.forwarding import forwards
from domain.models import MASKED_PASSWORD, Source
from domain.source import SourceState
from errors import SOURCE_NOT_EXISTS
from events.source import (
    SourceCreated,
    SourceDeleted,
    SourceDisabled,
    SourceEnabled,
    SourceSpec,
    SourceUpdated,
    SourceWorkerChanged,
    StoredPurge,
    StoredRelayConfig,
    StoredSecurity,
    source_stream,
)
from mysqlkit import upstream
from storage.aggregate import Aggregate
from storage.eventstore import EventStore

log = logging.getLogger("dmray.source")


class SourceManager:
    """Plain state manager behind the actor: commands validated against the folded state."""

    def __init__(self, name: str, cfg: RuntimeConfig):
        self.name = name
        self.store = EventStore(cfg.store_url)
        self.agg = Aggregate(self.store, source_stream(name), SourceState)
        self.box = cfg.secret_box()
        self._lock = asyncio.Lock()
        self._loaded = False

    async def _ready(self) -> SourceState:
        if not self._loaded:
            await self.agg.load()
            self._loaded = True
        return self.agg.state

    def _require(self) -> SourceSpec:
        st = self.agg.state
        if not st.exists or st.spec is None:
            raise SOURCE_NOT_EXISTS(self.name)
        return st.spec

    # --- conversions --------------------------------------------------------------
    def conn_config(self, spec: SourceSpec | None = None) -> upstream.ConnConfig:
        spec = spec or self._require()
        sec = spec.security
        return upstream.ConnConfig(
            host=spec.host,
            port=spec.port,
            user=spec.user,
            password=self.box.decrypt(spec.password_enc),
            ssl_ca=sec.ssl_ca_content or None if sec else None,
            ssl_cert=sec.ssl_cert_content or None if sec else None,
            ssl_key=self.box.decrypt(sec.ssl_key_content_enc) or None if sec else None,
            ssl_verify_identity=bool(sec and sec.ssl_verify_identity),
        )

    def _spec_of(self, src: Source, keep: SourceSpec | None) -> SourceSpec:
        if src.password is not None and not (src.password == MASKED_PASSWORD and keep):
            password_enc = self.box.encrypt(src.password)
        else:  # absent or masked on update (GET, then PUT): keep the stored one
            password_enc = keep.password_enc if keep else ""
        security = None
        if src.security is not None:
            key = src.security.ssl_key_content
            # Sent back masked (GET, then PUT): the stored key stays.
            key_enc = keep.security.ssl_key_content_enc \
                if key == MASKED_PASSWORD and keep and keep.security else self.box.encrypt(key)
            security = StoredSecurity(
                ssl_ca_content=src.security.ssl_ca_content,
                ssl_cert_content=src.security.ssl_cert_content,
                ssl_key_content_enc=key_enc,
                cert_allowed_cn=src.security.cert_allowed_cn or [],
                ssl_verify_identity=bool(src.security.ssl_verify_identity),
            )
        return SourceSpec(
            source_name=self.name,
            host=src.host,
            port=src.port,
            user=src.user,
            password_enc=password_enc,
            enable_gtid=src.enable_gtid,
            security=security,
            purge=StoredPurge(**src.purge.model_dump()) if src.purge else StoredPurge(),
            relay_config=StoredRelayConfig(
                **src.relay_config.model_dump(exclude_none=True)
            ) if src.relay_config else StoredRelayConfig(),
        )

    def view(self) -> dict[str, Any]:
        """The source as the API shows it: DM's field names, password masked."""
        st = self.agg.state
        spec = self._require()
        out: dict[str, Any] = {
            "source_name": spec.source_name,
            "host": spec.host,
            "port": spec.port,
            "user": spec.user,
            "password": MASKED_PASSWORD,
            "enable_gtid": spec.enable_gtid,
            "enable": st.enabled,
            "flavor": spec.flavor,
            "purge": spec.purge.model_dump(),
            "relay_config": spec.relay_config.model_dump(),
        }
        if spec.security is not None:
            out["security"] = {
                "ssl_ca_content": spec.security.ssl_ca_content,
                "ssl_cert_content": spec.security.ssl_cert_content,
                "ssl_key_content": MASKED_PASSWORD,
                "cert_allowed_cn": spec.security.cert_allowed_cn,
            }
            if spec.security.ssl_verify_identity:
                out["security"]["ssl_verify_identity"] = True
        return out

    # --- commands -----------------------------------------------------------------
    async def create(self, request_id: str, src: Source) -> dict[str, Any]:
        async with self._lock:
            st = await self._ready()
            if st.exists and st.request_id == request_id:
                return self.view()  # Ray retried a create that already happened
            spec = self._spec_of(src, None)
            info = await upstream.verify(self.conn_config(spec))
            spec = spec.model_copy(update={"flavor": info.flavor})
            enabled = True if src.enable is None else src.enable
            await self.agg.record(SourceCreated(request_id=request_id, spec=spec,
                                                enabled=enabled))
            log.info("source %s created (%s %s)", self.name, info.flavor, info.version)
            return self.view()

    async def update(self, src: Source) -> dict[str, Any]:
        async with self._lock:
            await self._ready()
            old = self._require()
            spec = self._spec_of(src, old)
            info = await upstream.verify(self.conn_config(spec))
            spec = spec.model_copy(update={"flavor": info.flavor})
            events: list[Any] = []
            if spec != old:
                events.append(SourceUpdated(spec=spec))
            if src.enable is not None and src.enable != self.agg.state.enabled:
                events.append(SourceEnabled() if src.enable else SourceDisabled())
            await self.agg.record(*events)
            return self.view()

    async def reseal(self) -> bool:
        """After a key rotation: the stored secrets encrypted again with the first key."""
        async with self._lock:
            st = await self._ready()
            self.box.reload()
            if not st.exists or st.spec is None:
                return False
            spec = st.spec
            sec = spec.security
            new = spec.model_copy(update={
                "password_enc": self.box.rotate(spec.password_enc),
                "security": sec.model_copy(update={
                    "ssl_key_content_enc": self.box.rotate(sec.ssl_key_content_enc)})
                if sec else None})
            await self.agg.record(SourceUpdated(spec=new))
            return True

    async def set_enabled(self, enabled: bool) -> None:
        async with self._lock:
            st = await self._ready()
            self._require()
            if st.enabled != enabled:  # idempotent: a repeated call records nothing
                await self.agg.record(SourceEnabled() if enabled else SourceDisabled())

    async def set_worker(self, worker_name: str) -> None:
        async with self._lock:
            st = await self._ready()
            if st.exists and st.worker_name != worker_name:
                await self.agg.record(SourceWorkerChanged(worker_name=worker_name))

    async def delete(self) -> None:
        async with self._lock:
            st = await self._ready()
            if st.exists:
                await self.agg.record(SourceDeleted())

    async def get(self) -> dict[str, Any] | None:
        st = await self._ready()
        return self.view() if st.exists else None

    async def schemas(self) -> list[str]:
        await self._ready()
        return await upstream.list_schemas(self.conn_config())

    async def tables(self, schema: str) -> list[str]:
        await self._ready()
        return await upstream.list_tables(self.conn_config(), schema)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
@with_jitter  # test-only delays (DMRAY_CHAOS_JITTER_MS); the class itself when unset
@forwards("m", SourceManager, "create", "update", "set_enabled", "set_worker", "delete", "get",
          "schemas", "tables", "reseal")
class SourceActor:
    """Thin Ray shell over SourceManager; on restart, __init__ replays the stream. Sources
    arrive typed (`Source`), parsed once where they enter (the API, the coordinator)."""

    def __init__(self, name: str, cfg: RuntimeConfig):
        self.m = SourceManager(name, cfg)

    async def state(self) -> dict[str, Any]:
        st = await self.m._ready()
        return {"version": self.m.agg.version, "exists": st.exists, "enabled": st.enabled,
                "worker_name": st.worker_name}

    async def conn_config(self) -> upstream.ConnConfig:
        """For the task actors of this source; travels in memory only, never logged."""
        await self.m._ready()
        return self.m.conn_config()

    def pid(self) -> int:
        return os.getpid()

