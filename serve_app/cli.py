"""The `dmray` command."""

from __future__ import annotations

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
    stop_timeout: Annotated[float, typer.Option(
        help="seconds a SIGINT/SIGTERM gives the clean shutdown before killing")] = 15.0,
) -> None:
    """Start a local Ray (or join one) and serve the DM API under /api/v1.

    SIGINT or SIGTERM stops it: a clean shutdown of at most --stop-timeout seconds, exit
    code 0; past that, or at a second signal, its processes are killed and it exits at
    once (code 1, or 128 + the signal number)."""
    from actors.config import RuntimeConfig
    from serve_app import rayenv, server

    stopper = server.Stopper(stop_timeout, say=lambda msg: console.print(msg))
    ray_address = ""
    stopper.install()  # from the start: a signal during the startup aborts it
    try:
        cfg = RuntimeConfig.build(data_dir, store_url, port=port,
                                  workers_per_node=workers_per_node)
        stopper.owns_ray = not address  # already while ray.init starts it
        stopper.owns_ray = server.init_ray(address, num_cpus)
        stopper.install()  # ray.init installs a SIGTERM handler of its own
        ray_address = server.gcs_address()
        rayenv.write_address(cfg.data_dir, ray_address)  # for `dmray status`, drivers
        server.start(cfg, host=host)
        stopper.serving = True
        console.print(f"[green]dmray[/] serving the DM API on http://{host}:{port}/api/v1 "
                      f"(docs: /api/v1/docs, data dir: {cfg.data_dir})")
        stopper.wait()
    except KeyboardInterrupt:
        if not stopper.requested.is_set():
            raise
    console.print("stopping dmray")
    if ray_address:
        rayenv.remove_address(cfg.data_dir, ray_address)
    code = stopper.stop(lambda: server.stop(stopper.owns_ray))
    if code == 0:
        console.print("dmray stopped")
    raise typer.Exit(code)


@app.command()
def status(
    data_dir: Annotated[Path, typer.Option(
        help="the data dir of the `dmray serve` to look at")] = Path("./dmray-data"),
    address: Annotated[str | None, typer.Option(
        help="the Ray cluster (GCS address); default: RAY_ADDRESS, else the one the "
             "server in --data-dir runs on")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """`ray status` of the cluster a `dmray serve` runs on: its nodes and resources. It
    finds the cluster and passes Ray's token authentication, which a bare `ray status`
    does not (InvalidAuthToken)."""
    import os
    import subprocess
    import sys

    from serve_app import rayenv

    env = dict(os.environ)
    target = address or env.get("RAY_ADDRESS") or rayenv.read_address(data_dir)
    if not target:
        console.print(f"no running dmray serve in {data_dir} (no "
                      f"{rayenv.address_file(data_dir)}): give --data-dir or --address")
        raise typer.Exit(1)
    rayenv.use_token_auth(env)
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli) if ray_cli.exists() else "ray", "status", "--address", target]
    raise typer.Exit(subprocess.call(cmd + (["-v"] if verbose else []), env=env))


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
