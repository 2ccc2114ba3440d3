"""DM v1 OpenAPI schema models (cluster and sources), with DM's field names.

Shared by the HTTP API and the Python driver API. Scalars are strict, as Go's JSON
decoding is: `"port": "3306"` is a type error, not a number.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from domain.names import BinlogFile, SourceName

MASKED_PASSWORD = "******"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Security(_Model):
    ssl_ca_content: StrictStr
    ssl_cert_content: StrictStr
    ssl_key_content: StrictStr
    cert_allowed_cn: list[StrictStr] | None = None
    # dmray's addition (DM ignores it): check the server certificate's host name too.
    ssl_verify_identity: StrictBool | None = None


class Purge(_Model):
    # seconds between purge runs; hours a relay file is kept (0: no limit); GB of free
    # disk below which the oldest files go (0: no limit)
    interval: StrictInt = Field(default=3600, ge=1)
    expires: StrictInt = Field(default=0, ge=0)
    remain_space: StrictInt = Field(default=15, ge=0)


class RelayConfig(_Model):
    enable_relay: StrictBool | None = None
    relay_binlog_name: BinlogFile | None = None
    relay_binlog_gtid: StrictStr | None = None
    relay_dir: StrictStr = "./relay_log"


class RelayStatus(_Model):
    master_binlog: str
    master_binlog_gtid: str
    relay_dir: str
    relay_binlog_gtid: str
    relay_catch_up_master: bool
    stage: str


class SourceStatus(_Model):
    source_name: str
    worker_name: str | None = None
    relay_status: RelayStatus | None = None
    error_msg: str | None = None


class Source(_Model):
    source_name: SourceName
    host: StrictStr = Field(min_length=1)
    port: StrictInt = Field(ge=1, le=65535)
    user: StrictStr = Field(min_length=1)
    password: StrictStr | None = None
    enable_gtid: StrictBool = False
    # Absent on create means enabled: a DM user creating a source expects it to work.
    enable: StrictBool | None = None
    flavor: StrictStr | None = None
    task_name_list: list[StrictStr] | None = None
    security: Security | None = None
    purge: Purge | None = None
    status_list: list[SourceStatus] | None = None
    relay_config: RelayConfig | None = None


class CreateSourceRequest(_Model):
    source: Source
    worker_name: StrictStr | None = None


class UpdateSourceRequest(_Model):
    source: Source


class WorkerNameRequest(_Model):
    worker_name: StrictStr = Field(min_length=1)


class ClusterMaster(_Model):
    name: str
    alive: bool
    leader: bool
    addr: str


class ClusterWorker(_Model):
    name: str
    addr: str
    bound_stage: str
    bound_source_name: str


class _HostPort(_Model):
    host: StrictStr
    port: StrictInt


class MasterTopology(_HostPort):
    name: StrictStr


class WorkerTopology(_HostPort):
    name: StrictStr


class ClusterTopology(_Model):
    master_topology_list: list[MasterTopology] | None = None
    worker_topology_list: list[WorkerTopology] | None = None
    grafana_topology: _HostPort | None = None
    prometheus_topology: _HostPort | None = None
    alert_manager_topology: _HostPort | None = None


class ClusterInfo(_Model):
    cluster_id: int
    topology: ClusterTopology | None = None


class EnableRelayRequest(_Model):
    worker_name_list: list[StrictStr] | None = None
    relay_binlog_name: BinlogFile | None = None
    relay_binlog_gtid: StrictStr | None = None
    relay_dir: StrictStr | None = None


class DisableRelayRequest(_Model):
    worker_name_list: list[StrictStr] | None = None


class PurgeRelayRequest(_Model):
    relay_binlog_name: BinlogFile = Field(min_length=1)
    relay_dir: StrictStr | None = None
