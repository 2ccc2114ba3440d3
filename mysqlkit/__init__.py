"""The replication engine, free of Ray: everything dmray knows about MySQL and MariaDB.

Sub-packages by concern:
- `binlog`: reading a source's binlog (network stream, event parsing, row decoding,
  DM's binlog event filter);
- `relay`: the local relay log (writer, file layout, reading it back through a reader);
- `sync`: applying binlog changes to the target (syncer, causality lanes, DML building,
  checkpoints, shard DDL coordination);
- `schema`: DDL parsing (sqlglot) and the schema tracker, table metadata;
- `full`: the full migration (chunk planning, consistent dump, dump files, load,
  deferred secondary indexes);
- `precheck`: DM's pre-check items (facts, checks, the result as DM renders it).
Modules of their own: `position` (binlog positions, GTID sets, the master position),
`meta` (the target's meta-schema tables), `upstream` (connections and driver errors),
`routing` (table selection and routing), `sqlquote`, `retry`, `faults` (test-only crash
points).
"""
