"""The `dmray` command."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, help="dmray: DM-compatible data migration on Ray.")
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """dmray: DM-compatible data migration on Ray."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    data_dir: Annotated[Path, typer.Option(help="where the SQLite event log and keys live")] = Path(
        "./dmray-data"),
    port: Annotated[int, typer.Option(help="HTTP port of the DM API")] = 8261,
    host: Annotated[str, typer.Option(
        help="HTTP listen address; beyond loopback (e.g. 0.0.0.0) every request needs a "
             "token, and the server refuses to start before one exists "
             "(dmray token create)")] = "127.0.0.1",
    address: Annotated[str | None, typer.Option(
        help="join this Ray cluster (e.g. auto, or ip:6379) instead of starting one")] = None,
    store_url: Annotated[str | None, typer.Option(envvar="DMRAY_STORE_URL",
        help="event store URL, e.g. mysql+asyncmy://user:pw@host:3306/dmray "
             "(default: SQLite in the data dir)")] = None,
    workers_per_node: Annotated[int, typer.Option(help="DM workers started on this node")] = 2,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a locally started Ray")] = None,
    stop_timeout: Annotated[float, typer.Option(
        help="seconds a SIGINT/SIGTERM gives the clean shutdown before killing")] = 15.0,
    tls_cert: Annotated[Path | None, typer.Option(
        help="serve the API over HTTPS with this certificate (PEM; with --tls-key)")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="the private key of --tls-cert (PEM)")] = None,
    secret_key_file: Annotated[Path | None, typer.Option(
        envvar="DMRAY_SECRET_KEY_FILE",
        help="the keys that seal passwords and TLS keys (default: ~/.config/dmray/keys/, "
             "or secret.key in --data-dir where an earlier version made it)")] = None,
    file_root: Annotated[list[Path] | None, typer.Option(
        help="a directory besides --data-dir where requests may name a relay dir or a "
             "dump's data_dir (repeatable)")] = None,
) -> None:
    """Start a local Ray (or join one) and serve the DM API under /api/v1.

    SIGINT or SIGTERM stops it: a clean shutdown of at most --stop-timeout seconds, exit
    code 0; past that, or at a second signal, its processes are killed and it exits at
    once (code 1, or 128 + the signal number)."""
    from actors.config import RuntimeConfig
    from actors.token_directory import stored_token_count
    from serve_app import rayenv, server

    stopper = server.Stopper(stop_timeout, say=lambda msg: console.print(msg))
    ray_address = ""
    stopper.install()  # from the start: a signal during the startup aborts it
    try:
        cfg = RuntimeConfig.build(data_dir, store_url, port=port,
                                  workers_per_node=workers_per_node,
                                  file_roots=[str(p) for p in file_root or []],
                                  secret_key_file=str(secret_key_file or "") or None,
                                  auth_required=not is_loopback(host))
        if cfg.auth_required and not asyncio.run(stored_token_count(cfg.store_url)):
            console.print(
                f"[red]refusing to listen on {host}[/]: beyond loopback every request needs a "
                "token and none exists yet. Start on 127.0.0.1, run `dmray token create "
                f"--data-dir {data_dir}`, then start again with --host {host}.")
            raise typer.Exit(2)
        tls = _tls_files(tls_cert, tls_key, joined=bool(address))
        stopper.owns_ray = not address  # already while ray.init starts it
        stopper.owns_ray = server.init_ray(address, num_cpus, haproxy=tls is None)
        stopper.install()  # ray.init installs a SIGTERM handler of its own
        ray_address = server.gcs_address()
        rayenv.write_address(cfg.data_dir, ray_address)  # for `dmray status`, drivers
        server.start(cfg, host=host, tls=tls)
        stopper.serving = True
        scheme = "https" if tls else "http"
        console.print(f"[green]dmray[/] serving the DM API on {scheme}://{host}:{port}/api/v1 "
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


def _tls_files(cert: Path | None, key: Path | None,
               joined: bool) -> tuple[str, str] | None:
    """The API's TLS files, checked before anything starts."""
    import os

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        console.print("[red]--tls-cert and --tls-key go together[/]")
        raise typer.Exit(2)
    for path in (cert, key):
        if not path.is_file():
            console.print(f"[red]no such file: {path}[/]")
            raise typer.Exit(2)
    if joined and os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        # Serve's HAProxy frontend speaks plain HTTP: the certificate would not be used.
        console.print("[red]--tls-cert needs Serve's Python proxy: start the cluster's Ray "
                      "without RAY_SERVE_ENABLE_HA_PROXY=1[/]")
        raise typer.Exit(2)
    return str(cert.resolve()), str(key.resolve())


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
    target = _cluster_address(data_dir, address)
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


token_app = typer.Typer(help="API tokens: create, list, revoke (needs the server running).")
app.add_typer(token_app, name="token")

DataDirOpt = Annotated[Path, typer.Option(
    help="the data dir of the `dmray serve` to manage")]
AddressOpt = Annotated[str | None, typer.Option(
    help="the Ray cluster (GCS address); default: RAY_ADDRESS, else the one the server in "
         "--data-dir runs on")]


def _cluster_address(data_dir: Path, address: str | None) -> str:
    """The Ray cluster of the `dmray serve` in data_dir (or the one given)."""
    import os

    from serve_app import rayenv

    target = address or os.environ.get("RAY_ADDRESS") or rayenv.read_address(data_dir)
    if not target:
        console.print(f"no running dmray serve in {data_dir} (no "
                      f"{rayenv.address_file(data_dir)}): give --data-dir or --address")
        raise typer.Exit(1)
    return target


def _coordinator(data_dir: Path, address: str | None) -> Any:
    from serve_app import rayenv

    target = _cluster_address(data_dir, address)
    rayenv.use_token_auth()  # before Ray is imported: it reads the variable once
    from actors.bootstrap import connect

    return connect(target)


def _call(method: Any, *args: object) -> Any:
    import ray

    from errors import DMError

    try:
        return ray.get(method.remote(*args))
    except DMError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="what the token is for (letters, digits, -_.)")],
    data_dir: DataDirOpt = Path("./dmray-data"),
    address: AddressOpt = None,
) -> None:
    """Make a token and print it (once: the server keeps only its digest)."""
    from domain.tokens import make_token

    coordinator = _coordinator(data_dir, address)
    new = make_token()
    _call(coordinator.create_token, new.token_id, name, new.digest)
    console.print(f"token {new.token_id} ({name}) created; send it as "
                  "'Authorization: Bearer <token>'. It is shown only now:")
    print(new.token)


@token_app.command("list")
def token_list(data_dir: DataDirOpt = Path("./dmray-data"), address: AddressOpt = None) -> None:
    """The live tokens: id, name, creation time (never the token)."""
    coordinator = _coordinator(data_dir, address)
    rows = _call(coordinator.list_tokens)
    for row in rows:
        print(f"{row['token_id']}  {row['name']}  {row['created_at']}")


@token_app.command("revoke")
def token_revoke(
    ref: Annotated[str, typer.Argument(help="a token id, or a name (all its tokens)")],
    data_dir: DataDirOpt = Path("./dmray-data"),
    address: AddressOpt = None,
) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    coordinator = _coordinator(data_dir, address)
    ids = _call(coordinator.revoke_token, ref)
    if not ids:
        console.print(f"no token with id or name {ref!r}")
        raise typer.Exit(1)
    console.print(f"revoked: {', '.join(ids)}")


secrets_app = typer.Typer(help="The keys that seal the stored secrets.")
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def secrets_rotate(
    data_dir: DataDirOpt = Path("./dmray-data"),
    address: AddressOpt = None,
    keep_old: Annotated[bool, typer.Option(
        help="keep the old keys in the file after the re-seal (they still decrypt)")] = False,
) -> None:
    """A new key: every stored secret (sources, tasks, templates) sealed again with it,
    then the old keys dropped from the key file. Other nodes need the new file."""
    from cryptography.fernet import Fernet

    from storage.secrets import env_keys, read_keys, write_keys

    coordinator = _coordinator(data_dir, address)
    info = _call(coordinator.key_info)
    if info["from_env"] or env_keys():
        console.print("[red]the keys come from DMRAY_SECRET_KEY[/]: set it to 'NEW,OLD' on "
                      "every node, restart, and run this with --keep-old to re-seal; then "
                      "drop OLD from the variable")
        raise typer.Exit(2)
    path = Path(info["file"])
    old = read_keys(path)
    new = Fernet.generate_key()
    write_keys(path, [new, *old])
    counts = _call(coordinator.reseal)
    if not keep_old:
        write_keys(path, [new])
    console.print(f"re-sealed with a new key: {counts['sources']} sources, {counts['tasks']} "
                  f"tasks, {counts['templates']} templates; key file {path}"
                  + (" (old keys kept)" if keep_old else ""))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
