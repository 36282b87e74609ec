"""The hash store: SHA256 per file and CivitAI's answer per SHA256, in SQLite beside the catalogs
(WAL mode; a rollback journal on a network filesystem, where WAL's shared memory does not work).

A file is known by (device, inode, size, mtime_ns): while those four hold, its bytes are
taken as unchanged and it is never hashed again. The path is a hint: a network volume
mounted again gets a new device number, and (path, size, mtime_ns) still finds its files.

Every method blocks; the service calls them from one worker thread (`HashStore` is not
shared between threads). A database that is corrupt, not ours, or ours with another schema
version (`user_version`) is moved aside and a new one is made: the store is a cache of facts
that can all be learned again. One that is only busy (another process holds a lock on it)
raises `sqlite3.OperationalError`, and the caller tries again later.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..civitai.lookup import Identity

logger = logging.getLogger(__name__)

STORE_NAME = ".catalog-hashes.sqlite3"
APPLICATION_ID = 0x43434853  # "CCHS": this service's hash store
SCHEMA_VERSION = 1
BULK_LOOKUP = 1000  # more files than this are looked up with one scan of the table
BUSY_TIMEOUT_S = 5.0  # how long a statement waits for another process's lock before it fails

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, hashed_at REAL NOT NULL,
    PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_path ON files (path);
CREATE TABLE IF NOT EXISTS identities (
    sha256 TEXT PRIMARY KEY,
    version_id INTEGER, model_id INTEGER,
    model_name TEXT, version_name TEXT, model_type TEXT, base_model TEXT,
    version TEXT,
    checked_at REAL NOT NULL, retry_at REAL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class FileKey:
    """What identifies a file's bytes without reading them."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    path: str

    @classmethod
    def of(cls, path: str, stat: os.stat_result) -> FileKey:
        """The key of a file from its `os.stat`."""
        return cls(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, path)


class HashStore:
    """SQLite in WAL mode; one connection, used from one thread at a time."""

    def __init__(self, path: Path, *, wal: bool = True) -> None:
        self.path = path
        self.wal = wal  # False on a network filesystem: a rollback journal, which needs no shared memory
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open or create the database; a corrupt or foreign file is moved aside and replaced."""
        try:
            self._db = self._connect()
        except sqlite3.OperationalError:  # cannot open at all (a folder in its place, no permission): not ours to move
            raise
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.unusable-{time.strftime('%Y%m%d-%H%M%S')}")
            logger.warning("the hash store %s is unusable (%s); moved aside to %s, hashing starts afresh", self.path, exc, aside.name)
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, f"{aside}{suffix}")
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if application_id != APPLICATION_ID and tables:
                raise sqlite3.DatabaseError(f"not this service's hash store (application_id {application_id})")
            schema = db.execute("PRAGMA user_version").fetchone()[0]
            if tables and schema != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"a hash store of schema version {schema}; this service reads version {SCHEMA_VERSION}")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            db.execute(f"PRAGMA journal_mode={'WAL' if self.wal else 'DELETE'}")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        return db

    def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("HashStore.open() was not called")
        return self._db

    def known_hashes(self, keys: Iterable[FileKey]) -> dict[str, str]:
        """SHA256 of each file whose key still holds (by inode, else by path): path -> sha256."""
        keys = list(keys)
        found: dict[str, str] = {}
        db = self.db
        if len(keys) > BULK_LOOKUP:  # a whole library: one scan of the table beats a query a file
            by_inode = {(dev, ino): (size, mtime, sha) for dev, ino, size, mtime, sha in db.execute("SELECT dev, ino, size, mtime_ns, sha256 FROM files")}
            misses = []
            for key in keys:
                row = by_inode.get((key.dev, key.ino))
                if row is not None and row[0] == key.size and row[1] == key.mtime_ns:
                    found[key.path] = row[2]
                else:
                    misses.append(key)
            by_inode.clear()
            keys = misses
        for key in keys:
            row = db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE dev=? AND ino=?", (key.dev, key.ino)).fetchone()
            if row is not None and row[0] == key.size and row[1] == key.mtime_ns:
                found[key.path] = row[2]
                continue
            row = db.execute(
                "SELECT sha256 FROM files WHERE path=? AND size=? AND mtime_ns=? LIMIT 1", (_stored(key.path), key.size, key.mtime_ns)
            ).fetchone()
            if row is not None:  # the same file on a volume mounted again (a new device number)
                found[key.path] = row[0]
                self.remember_hash(key, row[0])
        return found

    def remember_hash(self, key: FileKey, sha256: str) -> None:
        """Keep a file's SHA256 under its key."""
        self.db.execute(
            "INSERT OR REPLACE INTO files (dev, ino, size, mtime_ns, path, sha256, hashed_at) VALUES (?,?,?,?,?,?,?)",
            (key.dev, key.ino, key.size, key.mtime_ns, _stored(key.path), sha256, time.time()),
        )

    def remember_hashes(self, hashed: Iterable[tuple[FileKey, str]]) -> None:
        """Keep many files' SHA256 in one transaction."""
        db = self.db
        now = time.time()
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO files (dev, ino, size, mtime_ns, path, sha256, hashed_at) VALUES (?,?,?,?,?,?,?)",
                [(key.dev, key.ino, key.size, key.mtime_ns, _stored(key.path), sha256, now) for key, sha256 in hashed],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def identities(self, hashes: Iterable[str]) -> dict[str, Identity]:
        """What is known of each SHA256 (absent: never asked)."""
        found: dict[str, Identity] = {}
        db = self.db
        for sha256 in hashes:
            row = db.execute(
                "SELECT sha256, version_id, model_id, model_name, version_name, model_type, base_model, version, checked_at, retry_at "
                "FROM identities WHERE sha256=?",
                (sha256,),
            ).fetchone()
            if row is not None:
                version = row[7].encode() if isinstance(row[7], str) else row[7]
                found[sha256] = Identity(row[0], row[1], row[2], row[3], row[4], row[5], row[6], version, row[8], row[9])
        return found

    def remember_identities(self, identities: Iterable[Identity]) -> None:
        """Keep CivitAI's answers, in one transaction."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO identities (sha256, version_id, model_id, model_name, version_name, model_type, base_model, version, checked_at, retry_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (i.sha256, i.version_id, i.model_id, i.model_name, i.version_name, i.model_type, i.base_model,
                     None if i.version is None else i.version.decode(), i.checked_at, i.retry_at)
                    for i in identities
                ],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def counts(self) -> tuple[int, int]:
        """(files hashed, hashes identified as CivitAI versions)."""
        files = self.db.execute("SELECT count(*) FROM files").fetchone()[0]
        known = self.db.execute("SELECT count(*) FROM identities WHERE version_id IS NOT NULL").fetchone()[0]
        return files, known


def _stored(path: str) -> bytes:
    """A path as the store keeps it: its bytes on disk. Linux allows names that are not UTF-8
    (read as lone surrogates), which SQLite's text cannot hold."""
    return os.fsencode(path)
