"""The full migration: `chunks` (splitting tables by key ranges), `dump` (consistent
snapshots across connections, chunks as statements or lines), `dumpfiles` (dump files on
disk, ours and mydumper's), `load` (into the target) and `deferred_index` (secondary
indexes added after the rows)."""
