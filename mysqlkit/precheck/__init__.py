"""DM's task precheck (`check-task`): `facts` (what is read from each server), `grants`
(privileges), `checks` (the checking items, pure), `result` (DM's rendering) and `run`
(`precheck()`: which items a task needs, gathered concurrently)."""
