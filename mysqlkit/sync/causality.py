"""DM-style causality: spread row changes over parallel apply lanes without reordering
changes that touch the same row.

Each change carries keys: the identity of its before and after rows (and, optionally, the
values of its other unique keys, so that a delete freeing a unique value and an insert
taking it stay ordered). A change goes to the lane its keys are bound to; keys bound to no
lane bind to the lane chosen for the change. When its keys are bound to two different
lanes, no lane can take it without racing the other: `assign` returns None, and the caller
must flush every lane (a barrier), `reset()`, and assign again. Callers also `reset()`
after any other flush, since bindings only matter for changes not yet applied.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from mysqlkit.sync.dml import NULL, RowChange, row_identity

__all__ = ["Causality", "change_keys", "fold_value"]


class Causality:
    """Key → lane bindings for `n_lanes` lanes, valid until `reset()`."""

    __slots__ = ("_bound", "_left", "_next", "n_lanes", "stride")

    def __init__(self, n_lanes: int, stride: int = 1) -> None:
        """`stride`: unrelated changes go to one lane `stride` at a time before the next
        lane's turn, so a lane's batch holds whole runs of a transaction (one multi-row
        statement each) rather than every n-th row of each."""
        if n_lanes < 1 or stride < 1:
            raise ValueError("n_lanes and stride must be at least 1")
        self.n_lanes = n_lanes
        self.stride = stride
        self._bound: dict[str, int] = {}
        self._next = 0
        self._left = stride

    def __len__(self) -> int:
        return len(self._bound)

    def assign(self, change: RowChange | None, keys: Sequence[str]) -> int | None:
        """The lane of a change with these keys, or None on a conflict (flush all lanes,
        `reset()`, assign again). `change` is not inspected; it names what is assigned."""
        bound = self._bound
        lane: int | None = None
        for k in keys:
            got = bound.get(k)
            if got is not None and got != lane:
                if lane is not None:
                    return None
                lane = got
        if lane is None:
            # Unrelated changes go round-robin, `stride` at a time, which balances lanes.
            lane = self._next
            self._left -= 1
            if not self._left:
                self._left = self.stride
                self._next = (lane + 1) % self.n_lanes
        for k in keys:
            bound[k] = lane
        return lane

    def reset(self) -> None:
        """Forget all bindings: every lane has been flushed."""
        self._bound.clear()


def fold_value(value: str) -> str:
    """A literal's text folded so that values a case- or accent-insensitive (PAD SPACE)
    collation finds equal fold alike: NFKD without combining marks, casefolded, trailing
    spaces of a quoted string dropped. It may also equate values the collation tells apart
    (e.g. binary strings differing in case), which only costs parallelism."""
    if value.isascii():
        v = value.lower()
    else:
        v = "".join(ch for ch in unicodedata.normalize("NFKD", value)
                    if not unicodedata.combining(ch)).casefold()
    if v.endswith("'"):
        v = v[:-1].rstrip(" ") + "'"
    return v


def change_keys(change: RowChange, fold: bool = False,
                unique_keys: Sequence[tuple[int, ...]] = ()) -> list[str]:
    """Causality keys of a change: `schema.table:` + the identity of its before and after
    rows (key values joined by NUL, all non-generated values when there is no usable key).

    `fold`: fold the values (see `fold_value`), for tables whose key holds strings under a
    case-insensitive collation, where 'a' and 'A' are the same row. `unique_keys`: column
    indexes of the table's other unique keys; pass them when the table has several, or a
    change freeing a unique value may race the change taking it.
    """
    prefix = f"{change.schema}.{change.table}:"
    keys: list[str] = []
    for image in (change.before, change.after):
        if image is None:
            continue
        ident = row_identity(change, image)
        if fold:
            ident = tuple([fold_value(v) for v in ident])
        keys.append(prefix + "\x00".join(ident))
        for n, uk in enumerate(unique_keys):
            vals = [image[i] for i in uk]
            if NULL in vals:
                continue  # NULLs never conflict in a unique index
            if fold:
                vals = [fold_value(v) for v in vals]
            keys.append(f"{prefix}#{n}:" + "\x00".join(vals))
    if len(keys) > 1:
        keys = list(dict.fromkeys(keys))
    return keys
