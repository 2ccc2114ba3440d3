"""Reading a source's binlog: `stream` (the raw event stream on the source connection,
`connection`), `events` (event layouts), `rowcodec` (row images to SQL literals),
`reader` (`BinlogReader`: changes with resume points) and `filter` (DM's binlog event
filter)."""
