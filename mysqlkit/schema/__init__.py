"""Table schemas: `ddl` (parsing, splitting and rewriting DDL with sqlglot), `tracker`
(the schema of every replicated table as the binlog moves on) and `tableinfo` (columns and
keys read from the server, for dumping)."""
