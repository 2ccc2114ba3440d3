"""The `dmray` command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, help="dmray: DM-compatible data migration on Ray.")
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """dmray: DM-compatible data migration on Ray."""


@app.command()
def serve(
    data_dir: Annotated[Path, typer.Option(help="where the SQLite event log and keys live")] = Path(
        "./dmray-data"),
    port: Annotated[int, typer.Option(help="HTTP port of the DM API")] = 8261,
    host: Annotated[str, typer.Option(help="HTTP listen address")] = "0.0.0.0",
    address: Annotated[str | None, typer.Option(
        help="join this Ray cluster (e.g. auto, or ip:6379) instead of starting one")] = None,
    store_url: Annotated[str | None, typer.Option(envvar="DMRAY_STORE_URL",
        help="event store URL, e.g. mysql+asyncmy://user:pw@host:3306/dmray "
             "(default: SQLite in the data dir)")] = None,
    workers_per_node: Annotated[int, typer.Option(help="DM workers started on this node")] = 2,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a locally started Ray")] = None,
) -> None:
    """Start a local Ray (or join one) and serve the DM API under /api/v1."""
    from actors.config import RuntimeConfig
    from serve_app import server

    cfg = RuntimeConfig.build(data_dir, store_url, port=port,
                              workers_per_node=workers_per_node)
    owns_ray = server.init_ray(address, num_cpus)
    server.start(cfg, host=host)
    console.print(f"[green]dmray[/] serving the DM API on http://{host}:{port}/api/v1 "
                  f"(docs: /api/v1/docs, data dir: {cfg.data_dir})")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    console.print("stopping dmray")
    server.stop(owns_ray)


@app.command()
def join(
    address: Annotated[str, typer.Option(help="the Ray cluster running dmray")] = "auto",
    workers_per_node: Annotated[int | None, typer.Option(
        help="DM workers to start on this node (default: the server's setting)")] = None,
    node_id: Annotated[str | None, typer.Option(
        help="the Ray node (hex id) to start them on, when one host runs several Ray nodes "
             "(default: the node this command attaches to)")] = None,
    wait: Annotated[float, typer.Option(
        help="seconds to wait for `dmray serve` to come up on the head")] = 300.0,
) -> None:
    """Start this node's DM workers on a Ray cluster where `dmray serve` runs (for `ray up`
    worker nodes). The workers are detached actors: this command returns once they run."""
    import ray

    from actors.bootstrap import connect, start_local_workers

    coordinator = connect(address, wait_s=wait)
    cfg = ray.get(coordinator.config.remote())
    names = start_local_workers(coordinator, cfg, workers_per_node, node_id=node_id)
    console.print(f"[green]dmray[/] workers on this node: {', '.join(names)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
