"""Positions in a source's binlog: a resume point (`BinlogPosition`), an executed GTID set
(`GtidSet`, MariaDB and MySQL flavors) and the query for the source's current position
(`master_position`). Everything that reads, relays, dumps or checkpoints a binlog speaks
these."""

from __future__ import annotations

from dataclasses import dataclass, field

from mysqlkit import upstream


@dataclass(frozen=True)
class BinlogPosition:
    """Where a snapshot sits in the source's binlog. binlog_name is "" when the binlog is
    off (or not readable); gtid is "" when the server has no GTID set."""

    binlog_name: str
    binlog_pos: int
    gtid: str


@dataclass
class GtidSet:
    """An executed GTID set. MariaDB: the latest (server, seq) per domain, "d-s-n,...";
    MySQL: intervals per source uuid, "uuid:1-5:7,..." (intervals merged as GTIDs are
    added)."""

    flavor: str
    mariadb: dict[int, tuple[int, int]] = field(default_factory=dict)
    mysql: dict[str, list[list[int]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, flavor: str) -> GtidSet:
        s = cls(flavor)
        for part in (p.strip() for p in text.replace("\n", "").split(",")):
            if not part:
                continue
            if flavor == "mariadb":
                d, srv, seq = (int(x) for x in part.split("-"))
                s.mariadb[d] = (srv, seq)
            else:
                sid, *ranges = part.split(":")
                for r in ranges:
                    lo, _, hi = r.partition("-")
                    s._add_range(sid.lower(), int(lo), int(hi or lo))
        return s

    @property
    def empty(self) -> bool:
        return not self.mariadb and not self.mysql

    def add_mariadb(self, domain: int, server: int, seq: int) -> None:
        self.mariadb[domain] = (server, seq)

    def add_mysql(self, sid: str, gno: int) -> None:
        self._add_range(sid, gno, gno)

    def _add_range(self, sid: str, lo: int, hi: int) -> None:
        ivs = self.mysql.setdefault(sid, [])
        if ivs and ivs[-1][1] + 1 == lo:  # the common case: the next gno of the last range
            ivs[-1][1] = max(ivs[-1][1], hi)
            return
        ivs.append([lo, hi])
        ivs.sort()
        merged: list[list[int]] = []
        for a, b in ivs:
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.mysql[sid] = merged

    def __str__(self) -> str:
        if self.flavor == "mariadb":
            return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.mariadb.items()))
        return ",".join(
            sid + "".join(f":{a}" if a == b else f":{a}-{b}" for a, b in ivs)
            for sid, ivs in sorted(self.mysql.items()))


async def master_position(cfg: upstream.ConnConfig) -> BinlogPosition:
    async with upstream.open_conn(cfg) as conn:
        rows = await upstream.fetchall(conn, "SHOW MASTER STATUS")
        gtid = ""
        try:
            g = await upstream.fetchall(conn, "SELECT @@GLOBAL.gtid_binlog_pos")
            gtid = upstream.as_text(g[0][0] or "") if g else ""
        except Exception:  # MySQL: gtid_executed instead
            g = await upstream.fetchall(conn, "SELECT @@GLOBAL.gtid_executed")
            gtid = upstream.as_text(g[0][0] or "") if g else ""
    if not rows:
        return BinlogPosition("", 0, gtid)
    return BinlogPosition(upstream.as_text(rows[0][0]), int(rows[0][1]), gtid)
