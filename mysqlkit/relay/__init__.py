"""Relay log files: a local copy of a source's binlog, written by `RelayWriter` and read
back by a `BinlogReader` that `relay_reader` plugs a `RelayFileSource` into, as DM's relay
unit does. Modules: `files` (layout, meta, purge), `writer`, `reader`.

Files. One local file per upstream file, with the same name, in the standard binlog file
format: the 4-byte magic and then the events exactly as received (format description
event included, CRC32 trailers kept). Offsets equal the upstream positions: a hole in
what the source sends (the writer started mid-file, a GTID start skipped transactions)
is filled with one IGNORABLE event of the hole's size, so the `log_pos` of every event,
and therefore every resume point, is the same locally and upstream. Artificial events
(fake ROTATE, fake GTID_LIST: flag 0x20) and heartbeats are not written.

`relay.meta` (JSON, replaced atomically) records the writer's flavor, file, position and
GTID set at a transaction boundary. The files are the truth: on restart the writer scans
from the recorded point to the end of the newest file, truncates a partially written last
event and resumes the dump at the end of the data (no gap, no duplicate).
"""
