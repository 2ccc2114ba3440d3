"""The catalogue: DM's error codes that dmray returns (and its own, in DM's ranges)."""

from __future__ import annotations

from errors.family import ErrLevel, ErrorCode, ErrScope

# --- The catalogue: DM's codes that dmray returns. --------------------------------------
DB_DRIVER = ErrorCode(10001, "database driver error", ErrScope.NOT_SET, ErrLevel.HIGH,
                      "Please check the database connection and the database config in "
                      "configuration file.")
CONFIG_INVALID = ErrorCode(20001, "{}", ErrScope.INTERNAL, ErrLevel.MEDIUM)
META_NOT_SET = ErrorCode(20022, "must set meta for task-mode {}", ErrScope.INTERNAL,
                         ErrLevel.MEDIUM,
                         "Please check the `meta` config in task configuration file.")
TEMPLATE_EXISTS = ErrorCode(20050, "task template {} already exists")
TEMPLATE_NOT_EXISTS = ErrorCode(20051, "task template {} not exists")
PRECHECK_FAILED = ErrorCode(26005, "fail to check synchronization configuration with type: "
                                   "{}")
SOURCE_DISABLED = ErrorCode(38058, "can not start task {}: source {} is disabled")
NO_SOURCE_IN_WORKER = ErrorCode(40070, "no mysql source is being handled in the worker")
WORKER_NOT_EXISTS = ErrorCode(46004, "dm-worker with name {} not exists")
WORKER_ONLINE = ErrorCode(46005, "dm-worker with name {} for stage {} still online, must shut "
                                 "it down first")
INVALID_STAGE = ErrorCode(46006, "invalid stage transformation for dm-worker {}, "
                                 "from {} to {}")
SOURCE_EXISTS = ErrorCode(46007, "source config with ID {} already exists")
SOURCE_NOT_EXISTS = ErrorCode(46008, "source config with ID {} not exists")
SOURCE_HAS_TASKS = ErrorCode(46010, "source {} is used by tasks {}",
                             workaround="Please stop and delete the tasks first, or use force.")
SUBTASK_EXISTS = ErrorCode(46014, "subtasks with name {} for sources {} already exist")
TASK_NOT_EXISTS = ErrorCode(46018, "task with name {} not exist",
                            workaround="Please use `query-status` command to see tasks.")
TRANSFER_NEEDS_SYNC = ErrorCode(46019, "source {} has running task {} not in Sync unit")
MASTER_NOT_EXISTS = ErrorCode(46023, "dm-master with name {} not exists")
SOURCE_UPDATE_REFUSED = ErrorCode(46025, "source {} can only be updated when relay is disabled "
                                         "and no task is running, running tasks: {}")
SUBTASK_RUNNING = ErrorCode(46035, "subtask of task {} is running, can not update")
API_ERROR = ErrorCode(49001, "{}", ErrScope.INTERNAL, ErrLevel.HIGH)
STORE_CONFLICT = ErrorCode(49001, "concurrent update of {}, please retry", ErrScope.INTERNAL,
                           ErrLevel.MEDIUM)
# Not in DM (its API has no authentication): the same envelope, with HTTP 401 and 403.
AUTH_REQUIRED = ErrorCode(49401, "{}", ErrScope.INTERNAL, ErrLevel.MEDIUM)
CROSS_SITE_REFUSED = ErrorCode(49403, "{}", ErrScope.INTERNAL, ErrLevel.MEDIUM)

# --- dump/load (mysqlkit) ---
# DM's own codes where DM has one (dump unit 32001+, load unit 34001+); dmray's additions
# are numbered from 32101 / 34101 so they can never collide with a future DM code.
DUMP_RUNTIME = ErrorCode(32001, "mydumper/dumpling runs with error, with output (may empty): {}",
                         ErrScope.INTERNAL, ErrLevel.HIGH)
DUMP_GLOBAL_LOCK = ErrorCode(32004, "Couldn't acquire global lock", ErrScope.UPSTREAM,
                             ErrLevel.HIGH,
                             "Please check upstream privilege about FTWRL (RELOAD), or use "
                             "consistency `lock` or `none`.")
DUMP_ROW_TOO_LARGE = ErrorCode(32101, "a row of {} in chunk {} is too large to dump: its SQL "
                                      "text exceeds the source's max_allowed_packet",
                               ErrScope.UPSTREAM, ErrLevel.HIGH,
                               "Please raise max_allowed_packet on the source and the target.")
LOAD_INVALID_FILE_ENDING = ErrorCode(34002, "corresponding ending of sql: ')' not found",
                                     ErrScope.INTERNAL, ErrLevel.HIGH)
LOAD_READ_SCHEMA_FILE = ErrorCode(34005, "read schema from sql file {}", ErrScope.INTERNAL,
                                  ErrLevel.HIGH)
LOAD_NOT_CREATE_TABLE = ErrorCode(34007, "statement {} for {}/{} is not create table "
                                         "statement", ErrScope.INTERNAL, ErrLevel.HIGH)
LOAD_INVALID_INSERT_SQL = ErrorCode(34009, "invalid insert sql {}", ErrScope.INTERNAL,
                                    ErrLevel.HIGH)
LOAD_NO_DB_FILE = ErrorCode(34012, "invalid data sql file, cannot find db - {}",
                            ErrScope.INTERNAL, ErrLevel.HIGH)
LOAD_NO_TABLE_FILE = ErrorCode(34013, "invalid data sql file, cannot find table - {}",
                               ErrScope.INTERNAL, ErrLevel.HIGH)
LOAD_DUMP_DIR_NOT_FOUND = ErrorCode(34014, "{} does not exist or it's not a dir",
                                    ErrScope.INTERNAL, ErrLevel.HIGH)
LOAD_DUPLICATE_TABLE_FILE = ErrorCode(34015, "invalid table schema file, duplicated item - {}",
                                      ErrScope.INTERNAL, ErrLevel.HIGH)
LOAD_DUPLICATE_ENTRY = ErrorCode(34101, "duplicate entry while loading {}",
                                 ErrScope.DOWNSTREAM, ErrLevel.HIGH,
                                 "The target already holds some of these rows: clean the "
                                 "target table, or set on-duplicate to `replace` or `ignore`.")
LOAD_TABLE_MISMATCH = ErrorCode(34102, "table {} already exists in the target with a different "
                                       "structure: {}", ErrScope.DOWNSTREAM, ErrLevel.HIGH,
                                "Please drop or fix the target table, or route to another "
                                "table.")
LOAD_ADD_INDEX = ErrorCode(34103, "adding the deferred secondary indexes of {} failed",
                           ErrScope.DOWNSTREAM, ErrLevel.HIGH,
                           "Please fix the cause on the target, then start the task again: it "
                           "adds the indexes that are still missing.")

# --- tasks, precheck ---
CHECK_ITEM_NOT_SUPPORTED = ErrorCode(
    20003, "checking item {} is not supported\n{}", ErrScope.INTERNAL, ErrLevel.MEDIUM,
    "Please check `ignore_checking_items` in the task: `all` or the names of precheck items.")
TASK_FILE_INVALID = ErrorCode(20005, "{}", ErrScope.INTERNAL, ErrLevel.MEDIUM,
                              "Please check the task configuration file (DM YAML format).")
# DM answers an unknown binlog filter name with its generic OpenAPI error (49001).
FILTER_RULE_NOT_FOUND = ErrorCode(49001, "filter rule name {} not found.", ErrScope.INTERNAL,
                                  ErrLevel.HIGH)

# --- incremental replication: binlog (22001+), checkpoint (24001+), sync (36001+),
# schema tracker (44001+). dmray's additions are numbered from x101. ---
BINLOG_PURGED = ErrorCode(22101, "the binlog {} the task needs has been purged from the source",
                          ErrScope.UPSTREAM, ErrLevel.HIGH,
                          "Please start the task again from a full migration (task-mode all "
                          "with remove-meta), or from a binlog position the source still has.")
BINLOG_READ = ErrorCode(22102, "reading the binlog failed: {}", ErrScope.UPSTREAM,
                        ErrLevel.HIGH, retryable=True)
# Nowhere to start reading: no checkpoint, no position in source_conf, no snapshot.
BINLOG_NO_START = ErrorCode(22105, "no binlog position to start from: {}", ErrScope.INTERNAL,
                            ErrLevel.HIGH,
                            "Set binlog_name/binlog_pos (or binlog_gtid) in the task's "
                            "source_conf, start it with start_time, or run it in task_mode "
                            "all.")
BINLOG_START_TIME = ErrorCode(22103, "no binlog event at or after start_time {}",
                              ErrScope.UPSTREAM, ErrLevel.MEDIUM)
BINLOG_DECODE = ErrorCode(22104, "can not decode the row event of {}: {}", ErrScope.INTERNAL,
                          ErrLevel.HIGH)
CHECKPOINT_INVALID = ErrorCode(24101, "invalid checkpoint of task {} source {}: {}",
                               ErrScope.DOWNSTREAM, ErrLevel.HIGH)
SYNC_EXEC = ErrorCode(36006, "execute statement failed: {}", ErrScope.DOWNSTREAM,
                      ErrLevel.HIGH)
SYNC_COLUMN_MISMATCH = ErrorCode(36027, "Column count doesn't match value count: {} (columns) "
                                        "vs {} (values) for {}", ErrScope.INTERNAL,
                                 ErrLevel.HIGH,
                                 "Please check the table structure in the schema tracker "
                                 "(PUT /tasks/{task}/sources/{source}/schemas/...).")
SYNC_DDL_PARSE = ErrorCode(36101, "can not parse DDL {}: {}", ErrScope.INTERNAL,
                           ErrLevel.HIGH,
                           "Please skip it with a binlog_filter_rule ignore_sql, or fix the "
                           "schema tracker and start the task again.")
SYNC_SHARD_DDL = ErrorCode(36102, "shard DDL {} conflicts with the merged table: {}",
                          ErrScope.INTERNAL, ErrLevel.HIGH,
                          "Change the target table by hand so that it fits every shard, "
                          "skip the DDL with a binlog_filter_rule ignore_sql, and start "
                          "the task again.")
SCHEMA_TABLE_NOT_TRACKED = ErrorCode(44101, "table {} is not in the schema tracker",
                                     ErrScope.INTERNAL, ErrLevel.MEDIUM)
SCHEMA_INVALID_SQL = ErrorCode(44102, "invalid table structure: {}", ErrScope.INTERNAL,
                               ErrLevel.MEDIUM)
RELAY_PURGE_PROTECTED = ErrorCode(
    30101, "can not purge relay log files before {}: {} is still needed by a subtask "
    "(its oldest checkpoint)", ErrScope.INTERNAL, ErrLevel.MEDIUM,
    "Purge only files older than the oldest checkpoint of the subtasks using the relay log.")
RELAY_INVALID = ErrorCode(30102, "relay log {}: {}", ErrScope.INTERNAL, ErrLevel.HIGH,
                          "Remove the relay directory to fetch the binlog again.")
