"""The task directory of the cluster core: the task index in the cluster stream,
templates, and the calls into each task's actor."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import ray

from actors.handles import task_actor
from actors.remote import call
from actors.task_spec import (
    masked,
    masks_secrets,
    sealed,
    target_conn,
    with_stored_secrets,
)
from domain.cluster import ClusterState
from domain.task import PAUSED, RUNNING
from domain.task_models import StartTaskRequest, Task
from errors import (
    API_ERROR,
    SOURCE_DISABLED,
    SOURCE_NOT_EXISTS,
    SUBTASK_EXISTS,
    TASK_NOT_EXISTS,
    TEMPLATE_EXISTS,
    TEMPLATE_NOT_EXISTS,
    DMError,
)
from events.cluster import TaskAdded, TaskRemoved, TaskSourcesChanged, TemplateRemoved, TemplateSet
from mysqlkit import upstream
from mysqlkit.binlog.filter import BinlogFilter
from mysqlkit.precheck.run import precheck
from mysqlkit.routing import migrate_targets, router_for_source

if TYPE_CHECKING:
    from actors.cluster_core import ClusterCore

log = logging.getLogger("dmray.tasks")


def as_task(task: Task | dict[str, Any]) -> Task:
    """A task as it arrives: typed from the HTTP API (parsed there), a mapping from a
    driver script (parsed here, once)."""
    return task if isinstance(task, Task) else Task.model_validate(task)


class TaskDirectory:
    """The tasks of the cluster: their index in the cluster stream (through the core),
    templates, and the calls into each task's actor. A plain object the cluster core
    holds; it reaches the core for the stream, the locks and the sources."""

    def __init__(self, core: ClusterCore) -> None:
        self.core = core

    @property
    def state(self) -> ClusterState:
        return self.core.state

    def actor(self, name: str) -> Any:
        return task_actor(name, self.core.cfg, self.core.actor_opts)

    def _require_task(self, name: str) -> None:
        if name not in self.state.tasks:
            raise TASK_NOT_EXISTS(name)

    def tasks_of_source(self, name: str) -> list[str]:
        return self.state.tasks_of_source(name)

    async def running_tasks_of_source(self, name: str) -> list[str]:
        running = []
        for task in self.state.tasks_of_source(name):
            stages = await call(self.actor(task).stages.remote())
            if stages.get(name) == RUNNING:
                running.append(task)
        return running

    async def source_conns(self, names: list[str]) -> dict[str, upstream.ConnConfig]:
        conns = await asyncio.gather(
            *(call(self.core.source_actor(n).conn_config.remote()) for n in names))
        return dict(zip(names, conns, strict=True))

    async def _check(self, task: Task) -> str:
        full = task.source_config.full_migrate_conf
        if full is not None and full.data_dir:  # where a dump writes, a load reads
            self.core.cfg.inside_roots("data_dir", full.data_dir)
        sources = [c.source_name for c in task.source_config.source_conf]
        for s in sources:
            self.core.require_source(s)
            BinlogFilter(task, router_for_source(task, s))  # bad rules or filters: 400 now
        conns = await self.source_conns(sources)
        await self._refuse_self_copy(task, conns)
        result = await precheck(task, conns, target_conn(task))
        if not result.passed:
            raise result.to_error()
        return result.text()

    async def _refuse_self_copy(self, task: Task,
                                conns: dict[str, upstream.ConnConfig]) -> None:
        """A source that is the target server itself, with a table routed onto itself,
        would have the task write every row over its own source: refused. Unreachable
        servers are left to the precheck and the start."""
        try:
            target = await upstream.verify(target_conn(task))
        except DMError:
            return
        for name, conn in conns.items():
            try:
                same = (await upstream.verify(conn)).same_server(target)
            except DMError:
                continue
            if not same:
                continue
            for src, tgt in await migrate_targets(conn, router_for_source(task, name)):
                if (src.schema, src.table) == (tgt.schema, tgt.table):
                    raise API_ERROR(f"source {name} is the target server itself and task "
                                    f"{task.name} would migrate {src} onto itself; route it "
                                    "to another schema or table")

    async def create_task(self, request_id: str, task: Task | dict[str, Any]) -> dict[str, Any]:
        model = as_task(task)
        name = model.name
        sources = [c.source_name for c in model.source_config.source_conf]
        await self.core.ready()
        async with self.core.name_locks["task:" + name]:
            if name in self.state.tasks:
                if self.state.task_requests.get(name) == request_id:
                    return {"task": await call(self.actor(name).get.remote()),
                            "check_result": "pre-check is passed. "}
                raise SUBTASK_EXISTS(name, sources)
            check = await self._check(model)
            stored = await call(self.actor(name).create.remote(request_id, model))
            async with self.core.lock:
                await self.core.agg.record(TaskAdded(task_name=name, request_id=request_id,
                                                source_names=sources))
            await self.core.publish()
            return {"task": stored, "check_result": check}

    async def update_task(self, task: Task | dict[str, Any]) -> dict[str, Any]:
        given = model = as_task(task)
        name = model.name
        await self.core.ready()
        async with self.core.name_locks["task:" + name]:
            self._require_task(name)
            actor = self.actor(name)
            if masks_secrets(model):
                # Sent back masked (GET, then PUT): the precheck connects with the stored.
                stored = await call(actor.task_model.remote())
                model = with_stored_secrets(model, stored)
            check = await self._check(model)
            body = await call(actor.update.remote(given))
            sources = [c.source_name for c in model.source_config.source_conf]
            if sources != self.state.tasks.get(name):
                async with self.core.lock:
                    await self.core.agg.record(TaskSourcesChanged(task_name=name,
                                                             source_names=sources))
            await self.core.publish()
            return {"task": body, "check_result": check}

    async def delete_task(self, name: str, force: bool = False, keep_meta: bool = False) -> None:
        await self.core.ready()
        async with self.core.name_locks["task:" + name]:
            self._require_task(name)
            actor = self.actor(name)
            stages = await call(actor.stages.remote())
            if not force and RUNNING in stages.values():
                raise API_ERROR(f"task {name} has running subtasks, stop it first or use force")
            await call(actor.delete.remote(keep_meta))
            async with self.core.lock:
                await self.core.agg.record(TaskRemoved(task_name=name))
            ray.kill(actor, no_restart=True)
            await self.core.publish()

    async def get_task(self, name: str, with_status: bool = False) -> dict[str, Any]:
        await self.core.ready()
        self._require_task(name)
        actor = self.actor(name)
        body = await call(actor.get.remote())
        if body is None:
            raise TASK_NOT_EXISTS(name)
        if with_status:
            body["status_list"] = await self.task_status(name, None)
        return dict(body)

    async def list_tasks(self, with_status: bool = False, stage: str | None = None,
                         source_names: list[str] | None = None) -> list[dict[str, Any]]:
        await self.core.ready()
        out = []
        for name in sorted(self.state.tasks):
            if source_names and not set(source_names) & set(self.state.tasks[name]):
                continue
            if stage:
                stages = await call(self.actor(name).stages.remote())
                if stage not in stages.values():
                    continue
            out.append(await self.get_task(name, with_status))
        return out

    async def task_status(self, name: str,
                          sources: list[str] | None = None) -> list[dict[str, Any]]:
        await self.core.ready()
        self._require_task(name)
        return list(await call(self.actor(name).status.remote(
            sources, dict(self.state.bindings))))

    async def start_task(self, name: str,
                         req: StartTaskRequest | dict[str, Any] | None = None) -> None:
        start = req if isinstance(req, StartTaskRequest) else \
            StartTaskRequest.model_validate(req or {})
        await self.core.ready()
        async with self.core.name_locks["task:" + name]:
            self._require_task(name)
            chosen = start.source_name_list or self.state.tasks[name]
            for s in chosen:
                if s not in self.state.sources:
                    raise SOURCE_NOT_EXISTS(s)
                view = await self.core.view(s)
                if view is not None and not view.get("enable", True):
                    raise SOURCE_DISABLED(name, s)
            # The task actor reads start_time in the task's own timezone.
            await call(self.actor(name).start_request.remote(start))

    async def stop_task(self, name: str, sources: list[str] | None = None) -> None:
        await self.core.ready()
        async with self.core.name_locks["task:" + name]:
            self._require_task(name)
            await call(self.actor(name).stop.remote(sources))

    async def pause_source_subtasks(self, source: str) -> list[str]:
        """Source disable (DM): every running subtask of the source pauses, as a stop of that
        source's subtask would; the tasks it paused."""
        paused = []
        for task in self.tasks_of_source(source):
            async with self.core.name_locks["task:" + task]:
                if source not in self.state.tasks.get(task, []):
                    continue  # deleted meanwhile
                actor = self.actor(task)
                if (await call(actor.stages.remote())).get(source) == RUNNING:
                    await call(actor.stop.remote([source]))
                    paused.append(task)
        if paused:
            log.info("source %s disabled: paused its subtasks of %s", source, paused)
        return paused

    async def resume_source_subtasks(self, source: str) -> list[str]:
        """Source enable (DM): its paused subtasks run again, from their checkpoints (a
        Stopped subtask, never started, and a Finished one stay as they are). One that
        cannot start stays Paused, and the others still start; the first error is raised
        once all were tried."""
        resumed: list[str] = []
        failed: list[DMError] = []
        for task in self.tasks_of_source(source):
            async with self.core.name_locks["task:" + task]:
                if source not in self.state.tasks.get(task, []):
                    continue
                actor = self.actor(task)
                if (await call(actor.stages.remote())).get(source) != PAUSED:
                    continue
                try:
                    await call(actor.start.remote([source], False, None, 0.0))
                except DMError as err:
                    log.warning("source %s enabled: subtask %s/%s not resumed: %s",
                                source, task, source, err)
                    failed.append(err)
                    continue
                resumed.append(task)
        if resumed:
            log.info("source %s enabled: resumed its subtasks of %s", source, resumed)
        if failed:
            raise failed[0]
        return resumed

    async def task_migrate_targets(self, name: str, source: str,
                                   schema_pattern: str | None = None,
                                   table_pattern: str | None = None) -> list[dict[str, str]]:
        await self.core.ready()
        self._require_task(name)
        if source not in self.state.tasks[name]:
            raise SOURCE_NOT_EXISTS(source)
        model: Task = await call(self.actor(name).task_model.remote())
        router = router_for_source(model, source)
        conn = (await self.source_conns([source]))[source]
        pairs = await migrate_targets(conn, router, schema_pattern, table_pattern)
        return [{"source_schema": s.schema, "source_table": s.table,
                 "target_schema": t.schema, "target_table": t.table} for s, t in pairs]

    async def task_schema(self, name: str, source: str, op: str, schema: str | None,
                          table: str | None, body: dict[str, Any] | None) -> Any:
        """The schema tracker endpoints of one subtask (op: list, get, put, delete)."""
        await self.core.ready()
        self._require_task(name)
        if source not in self.state.tasks[name]:
            raise SOURCE_NOT_EXISTS(source)
        return await call(self.actor(name).schema_op.remote(source, op, schema, table,
                                                                  body))

    # --- templates ------------------------------------------------------------------
    async def create_template(self, task: Task | dict[str, Any],
                              overwrite: bool = False) -> dict[str, Any]:
        model = as_task(task)
        await self.core.ready()
        async with self.core.lock:
            if model.name in self.state.templates and not overwrite:
                raise TEMPLATE_EXISTS(model.name)
            keep = self.state.templates.get(model.name)
            await self.core.agg.record(TemplateSet(
                name=model.name, task=sealed(model, self.core.box, keep=keep)))
        return masked(self.state.templates[model.name])

    async def list_templates(self) -> list[dict[str, Any]]:
        await self.core.ready()
        return [masked(self.state.templates[n]) for n in sorted(self.state.templates)]

    async def get_template(self, name: str) -> dict[str, Any]:
        await self.core.ready()
        if name not in self.state.templates:
            raise TEMPLATE_NOT_EXISTS(name)
        return masked(self.state.templates[name])

    async def update_template(self, name: str,
                              task: Task | dict[str, Any]) -> dict[str, Any]:
        model = as_task(task)
        if model.name != name:
            raise API_ERROR(f"template name {model.name!r} does not match the path {name!r}")
        await self.core.ready()
        async with self.core.lock:
            if name not in self.state.templates:
                raise TEMPLATE_NOT_EXISTS(name)
            await self.core.agg.record(TemplateSet(
                name=name, task=sealed(model, self.core.box, keep=self.state.templates[name])))
        return masked(self.state.templates[name])

    async def delete_template(self, name: str) -> None:
        await self.core.ready()
        async with self.core.lock:
            if name not in self.state.templates:
                raise TEMPLATE_NOT_EXISTS(name)
            await self.core.agg.record(TemplateRemoved(name=name))

    async def import_templates(self, overwrite: bool = False) -> dict[str, Any]:
        await self.core.ready()
        ok: list[str] = []
        failed: list[dict[str, str]] = []
        for name in sorted(self.state.tasks):
            try:
                model: Task = await call(self.actor(name).task_model.remote())
                async with self.core.lock:
                    if name in self.state.templates and not overwrite:
                        raise TEMPLATE_EXISTS(name)
                    await self.core.agg.record(TemplateSet(name=name,
                                                      task=sealed(model, self.core.box)))
                ok.append(name)
            except DMError as err:
                failed.append({"task_name": name, "error_msg": str(err)})
        return {"success_task_list": ok, "failed_task_list": failed}
