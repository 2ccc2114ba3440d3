"""Free TCP ports for what tests and benchmarks start privately."""

from __future__ import annotations

import socket
import threading

__all__ = ["free_port", "unique_port"]

_port_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range (see serve_app.server.free_port):
    for a server that listens long after the port was picked (the API)."""
    from serve_app.server import free_port as pick

    return pick()


def unique_port(host: str = "127.0.0.1") -> int:
    """A free port never handed out before in this process (never 3306, the machine's
    shared server). The kernel may hand the same ephemeral port to two threads once it is
    closed again; remembering what we gave out avoids that, and callers retry the rest
    (real races)."""
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port != 3306 and port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise OSError("could not find a free TCP port")
