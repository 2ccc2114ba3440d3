"""The DM v1 HTTP API on Ray Serve (FastAPI ingress), and the `dmray` command."""
