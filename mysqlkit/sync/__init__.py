"""Incremental replication onto the target: `syncer` (the loop from binlog changes to
target transactions), `causality` (which changes may run in parallel lanes), `dml`
(statements per change and merged batches), `checkpoint` (the syncer's checkpoint tables,
written with the data) and `shard_ddl` (merging the DDL of sharded sources)."""
