"""Directories named in requests (relay_dir, a dump's data_dir): resolved, and held inside
the directories the operator allows (the server's data dir and `--file-root`s)."""

from __future__ import annotations

from pathlib import Path


class PathOutsideRoots(ValueError):
    pass


def resolve_inside(kind: str, given: str, base: str | Path, roots: list[str]) -> Path:
    """`given` resolved (a relative path under `base`, symbolic links followed) if it lies
    in one of `roots`, else PathOutsideRoots saying where it leads."""
    if "\x00" in given:
        raise PathOutsideRoots(f"{kind} must not contain a NUL character")
    path = Path(given).expanduser()
    if not path.is_absolute():
        path = Path(base) / path
    path = path.resolve()
    allowed = [Path(r).resolve() for r in roots]
    if any(path == r or path.is_relative_to(r) for r in allowed):
        return path
    shown = given if len(given) <= 200 else given[:200] + "..."
    raise PathOutsideRoots(
        f"{kind} {shown!r} resolves to {path}, outside the directories this server may "
        f"write ({', '.join(map(str, allowed))}); start it with --file-root to allow more")
