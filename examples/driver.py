"""Drive a running dmray from a Python script, without HTTP.

    dmray serve &                        # or any Ray cluster running dmray
    python examples/driver.py --host 127.0.0.1 --port 3306 --user root --password ...

It joins the Ray cluster (RAY_ADDRESS, or "auto"), lists the workers, creates a source,
shows its status and upstream schemas, and deletes it again unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os

from actors.client import DMClient
from events.errors import DMError


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"))
    p.add_argument("--source-name", default="driver-example")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--user", default="root")
    p.add_argument("--password", default=os.environ.get("DMRAY_EXAMPLE_PASSWORD", ""))
    p.add_argument("--keep", action="store_true", help="keep the source afterwards")
    args = p.parse_args()

    dm = DMClient.connect(args.address)
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
