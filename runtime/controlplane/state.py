"""The control plane's state in SQLite: bundles, nodes, sender ids, epochs, the audit log.

Durability is what keeps nonces unique: a sender id is allocated in the same
transaction that records the release, with synchronous=FULL, before the keys
leave (concurrent releases share one transaction and one fsync: group commit); a restarted control plane therefore continues after the last id it
ever handed out (never reusing one, never skipping one). Epoch secrets are
sealed rows (keyschedule.Sealer). The audit log is append-only: triggers
refuse UPDATE and DELETE, and each row carries the SHA-256 of the previous
row, so a row edited or removed behind SQLite's back breaks the chain
(`verify_audit_chain`). No key material is ever written to the audit log.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from sealnet.runtime.keyschedule import MAX_EPOCH, Sealer

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (measurement TEXT PRIMARY KEY, policy TEXT NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  sender INTEGER PRIMARY KEY, domain TEXT NOT NULL, tee TEXT NOT NULL, simulated INTEGER NOT NULL,
  launch_measurement TEXT NOT NULL, bundle_measurement TEXT NOT NULL, chip_id TEXT, released REAL NOT NULL);
CREATE TABLE IF NOT EXISTS epochs (
  pair TEXT NOT NULL, epoch INTEGER NOT NULL, secret BLOB NOT NULL, source TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (pair, epoch));
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, event TEXT NOT NULL, role TEXT NOT NULL,
  domain TEXT NOT NULL, peer TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
  prev TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
SENDER_KEY = "next_sender"
EPOCH_KEY = "highest_epoch"
SEAL_CHECK = "seal_check"
MAX_SENDER = 0xFFFFFFFF


class StateError(RuntimeError):
    """The state database cannot be used (locked, another domain's, out of sender ids)."""


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: float
    event: str
    role: str
    domain: str
    peer: str
    code: str
    reason: str
    detail: dict[str, Any]


def _row_hash(prev: str, values: tuple[Any, ...]) -> str:
    return hashlib.sha256((prev + json.dumps(values, separators=(",", ":"))).encode()).hexdigest()


class State:
    def __init__(self, path: str, *, domain: str, sealer: Sealer) -> None:
        self.path = path
        self.sealer = sealer
        self.lock = threading.RLock()  # one connection, used from the event loop and the commit thread
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        owner = self._meta("domain")
        if owner is None:
            self._set_meta("domain", domain)
        elif owner != domain:
            raise StateError(f"{path}: this database belongs to the control plane of domain {owner!r}, not {domain!r}")
        check = self._meta(SEAL_CHECK)
        if check is None:
            self._set_meta(SEAL_CHECK, sealer.seal(SEAL_CHECK, b"sealnet").hex())
        else:
            sealer.open(SEAL_CHECK, bytes.fromhex(check))  # raises SealedStateError with a clear reason
        self.domain = domain

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -------------------------------------------------------------- bundles

    def add_bundle(self, measurement: str, policy: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO bundles VALUES (?, ?, ?)", (measurement, policy, time.time()))

    # -------------------------------------------------------------- releases

    def record_release(self, *, domain: str, tee: str, simulated: bool, launch: str, bundle: str, chip_id: str,
                       peer: str, detail: dict[str, Any]) -> int:
        """Allocate the next sender id and record node and release, in one durable transaction."""
        return self.record_releases([dict(domain=domain, tee=tee, simulated=simulated, launch=launch, bundle=bundle,
                                          chip_id=chip_id, peer=peer, detail=detail)])[0]

    def record_releases(self, releases: list[dict[str, Any]]) -> list[int]:
        """Several releases in one durable transaction (group commit: one fsync for the batch)."""
        with self._tx():
            first = int(self._meta(SENDER_KEY) or "1")
            if first + len(releases) - 1 > MAX_SENDER:
                raise StateError("out of sender ids for this domain")
            self._set_meta(SENDER_KEY, str(first + len(releases)))
            for sender, r in enumerate(releases, first):
                self.db.execute("INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (sender, r["domain"], r["tee"], int(r["simulated"]), r["launch"], r["bundle"],
                                 r["chip_id"], time.time()))
                self._append("release", "node", r["domain"], r["peer"], "ok", "keys released",
                             {**r["detail"], "sender": sender})
        return list(range(first, first + len(releases)))

    def senders(self) -> list[int]:
        with self.lock:
            return [int(r[0]) for r in self.db.execute("SELECT sender FROM nodes ORDER BY sender")]

    # -------------------------------------------------------------- epochs

    def highest_epoch(self) -> int:
        with self.lock:
            return int(self._meta(EPOCH_KEY) or "0")

    def advance_epoch(self, epoch: int) -> int:
        """The epoch to serve: never below one already served (a clock stepped back)."""
        with self.lock:
            current = max(epoch, self.highest_epoch())
            if current > MAX_EPOCH - 1:
                raise StateError("epoch counter exhausted")
            if current != self.highest_epoch():
                self._set_meta(EPOCH_KEY, str(current))
            return current

    def pair_secret(self, pair: str, epoch: int) -> bytes | None:
        with self.lock:
            row = self.db.execute("SELECT secret FROM epochs WHERE pair = ? AND epoch = ?", (pair, epoch)).fetchone()
        return None if row is None else self.sealer.open(f"epoch|{pair}|{epoch}", bytes(row[0]))

    def store_pair_secret(self, pair: str, epoch: int, secret: bytes, source: str) -> bytes:
        """Store a secret unless one exists (a pair's epoch secret never changes); returns the stored one."""
        sealed = self.sealer.seal(f"epoch|{pair}|{epoch}", secret)
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO epochs VALUES (?, ?, ?, ?, ?)",
                            (pair, epoch, sealed, source, time.time()))
            stored = self.pair_secret(pair, epoch)
        assert stored is not None
        return stored

    def epochs(self, pair: str) -> list[int]:
        with self.lock:
            return [int(r[0]) for r in self.db.execute("SELECT epoch FROM epochs WHERE pair = ? ORDER BY epoch",
                                                       (pair,))]

    # -------------------------------------------------------------- audit

    def _append(self, event: str, role: str, domain: str, peer: str, code: str, reason: str,
                detail: dict[str, Any]) -> None:
        row = self.db.execute("SELECT id, at, event, role, domain, peer, code, reason, detail, prev FROM audit "
                              "ORDER BY id DESC LIMIT 1").fetchone()
        prev = _row_hash(row[9], tuple(row[:9])) if row else "0" * 64
        at = time.time()
        next_id = (row[0] + 1) if row else 1
        self.db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (next_id, at, event, role, domain, peer[:200], code, reason[:500],
                         json.dumps(detail, sort_keys=True), prev))

    def audit(self, event: str, *, role: str, domain: str, peer: str, code: str, reason: str,
              detail: dict[str, Any] | None = None) -> None:
        with self._tx():
            self._append(event, role, domain, peer, code, reason, detail or {})

    def record_audits(self, rows: list[dict[str, Any]]) -> list[None]:
        """Several audit rows in one durable transaction (group commit)."""
        with self._tx():
            for r in rows:
                self._append(r["event"], r["role"], r["domain"], r["peer"], r["code"], r["reason"], r["detail"])
        return [None] * len(rows)

    def audit_rows(self) -> list[AuditRow]:
        with self.lock:
            return [AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
                    for r in self.db.execute("SELECT id, at, event, role, domain, peer, code, reason, detail "
                                             "FROM audit ORDER BY id")]


def verify_audit_chain(db: sqlite3.Connection) -> int | None:
    """The id of the first row whose predecessor was changed or removed, or None."""
    prev = "0" * 64
    expected_id = 1
    for row in db.execute("SELECT id, at, event, role, domain, peer, code, reason, detail, prev FROM audit ORDER BY id"):
        if row[0] != expected_id or row[9] != prev:
            return int(row[0])
        prev = _row_hash(row[9], tuple(row[:9]))
        expected_id += 1
    return None
