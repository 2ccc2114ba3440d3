"""Drive a running dmray from a Python script, without HTTP.

    ./scripts/serve.sh &                 # or `dmray serve`, or any Ray cluster running dmray
    .venv/bin/python examples/driver.py --host 127.0.0.1 --port 3306 --user root --password ...

It joins the Ray cluster (RAY_ADDRESS, else the one the server in --data-dir runs on, else
Ray's "auto"), lists the workers, creates a source, shows its status and upstream schemas,
and deletes it again unless --keep is given. Run by another Python than the checkout's
.venv (`python examples/driver.py`), it switches to .venv's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"


def _bootstrap() -> None:
    """Make the checkout's packages importable whatever the current directory, and run in
    the checkout's .venv (where Ray and the other dependencies are) when started by
    another Python."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("ray") is None:  # found, not imported: see rayenv
        python = VENV / "bin" / "python"
        if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
            os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
        raise SystemExit("Ray is not installed for this Python: run ./scripts/setup.sh, "
                         f"then {python} {Path(__file__).resolve()}")


_bootstrap()

from serve_app import rayenv  # noqa: E402  (after _bootstrap, and before Ray reads its env)

rayenv.use_token_auth()  # the token of a local Ray, for an explicit address too

from actors.client import DMClient  # noqa: E402
from errors import DMError  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--address", default=None,
                   help="Ray cluster (default: RAY_ADDRESS, else the server in --data-dir, "
                        "else auto)")
    p.add_argument("--data-dir", default=str(rayenv.DEFAULT_DATA_DIR),
                   help="data dir of the `dmray serve` to drive (default: ./dmray-data)")
    p.add_argument("--source-name", default="driver-example")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--user", default="root")
    p.add_argument("--password", default=os.environ.get("DMRAY_EXAMPLE_PASSWORD", ""))
    p.add_argument("--keep", action="store_true", help="keep the source afterwards")
    args = p.parse_args()

    dm = DMClient.connect(args.address or rayenv.cluster_address(args.data_dir))
    print("workers:", json.dumps(dm.list_workers()))
    try:
        src = dm.create_source({"source_name": args.source_name, "host": args.host,
                                "port": args.port, "user": args.user,
                                "password": args.password})
    except DMError as err:  # same code and text as the HTTP API's error_msg
        print("create failed:", err)
        return 1
    print("created:", json.dumps(src))
    print("status:", json.dumps(dm.source_status(args.source_name)))
    print("schemas:", json.dumps(dm.source_schemas(args.source_name)))
    if not args.keep:
        dm.delete_source(args.source_name, False)
        print("deleted:", args.source_name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
