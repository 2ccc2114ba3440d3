"""A multi-node dmray on one machine, for tests/cluster/test_multinode.py (run as a subprocess:
one pytest process cannot hold two Ray instances).

    python -m tests.support.multinode_cluster --data-dir D --port P --nodes node-a,node-b

Starts a Ray cluster (ray.cluster_utils.Cluster): a head running `dmray serve`'s code path
(coordinator and API, no workers of its own) and one Ray node per name, labelled with its
dmray node key, whose workers are started by `dmray join --node-id` in a process of its own,
as on a real worker node. Prints one JSON line `{"url", "head", "nodes": {name: node_id}}`
once every worker heartbeats, then answers commands read from stdin, one JSON line each
(output lines start with PREFIX):

    remove <name>        kill that Ray node (raylet and every process on it)
    placements <task>    {source: {worker, node_id}} of the task's running subtasks
    quit                 shut everything down
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

PREFIX = "DMRAY-JSON "  # Ray prints to stdout too (e.g. a raylet's death): answers are marked


def emit(obj: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def join_node(address: str, node_id: str, workers: int) -> None:
    """`dmray join`, for one of several Ray nodes on this host (hence --node-id)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    subprocess.run(
        [sys.executable, "-m", "serve_app.cli", "join", "--address", address,
         "--node-id", node_id, "--workers-per-node", str(workers)],
        check=True, env=env, stdout=sys.stderr, stderr=sys.stderr, timeout=120)


def wait_workers(url: str, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = httpx.get(f"{url}/cluster/workers", timeout=5).json()["data"]
            if sum(w["bound_stage"] != "offline" for w in data) >= count:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{count} workers not online in {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--nodes", default="node-a,node-b")
    ap.add_argument("--workers-per-node", type=int, default=2)
    ap.add_argument("--heartbeat-timeout", type=float, default=3.0)
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from actors.config import NAMESPACE, NODE_KEY_LABEL, RuntimeConfig
    from actors.remote import task_actor_name
    from serve_app import server

    server.set_serve_env()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "resources": {server.API_RESOURCE: 1}})
    nodes = {name: cluster.add_node(num_cpus=1, labels={NODE_KEY_LABEL: name})
             for name in args.nodes.split(",")}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    cfg = RuntimeConfig.build(args.data_dir, port=args.port, workers_per_node=0,
                              heartbeat_interval=0.5,
                              heartbeat_timeout=args.heartbeat_timeout)
    server.start(cfg, host="127.0.0.1")
    url = f"http://127.0.0.1:{cfg.port}/api/v1"
    for node in nodes.values():
        join_node(cluster.address, node.node_id, args.workers_per_node)
    wait_workers(url, args.workers_per_node * len(nodes))
    head_id = ray.get_runtime_context().get_node_id()
    emit({"url": url, "head": head_id,
          "nodes": {name: n.node_id for name, n in nodes.items()}})
    try:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if not cmd:
                continue
            if cmd == "remove":
                cluster.remove_node(nodes.pop(arg), allow_graceful=False)
                emit({"removed": arg})
            elif cmd == "placements":
                actor = ray.get_actor(task_actor_name(arg), namespace=NAMESPACE)
                emit(ray.get(actor.placements.remote(), timeout=30))
            elif cmd == "actors":  # where each named actor runs (for diagnosis)
                table = ray._private.state.actors()  # the state API needs the dashboard
                emit({a["Name"]: a["Address"]["NodeID"] for a in table.values()
                      if a.get("Name") and a.get("State") == "ALIVE"})
            elif cmd == "quit":
                break
            else:
                emit({"error": f"unknown command {cmd!r}"})
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
