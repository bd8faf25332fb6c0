"""Durable replica storage: sqlite in WAL mode, one transaction per block.

A block row and the new head are written in the same transaction with
`synchronous=FULL`, so a SIGKILL or power cut leaves either the whole block
or none of it; sqlite's WAL frame checksums discard a torn tail on reopen.
Rows are also checksummed here, so a byte flipped at rest is reported, and
sqlite's own complaints about a damaged file (not a database, malformed
image) become a `StoreError` naming the file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from eth_utils import keccak

from .abc import BlockStoreAPI
from .errors import StoreError

FILENAME = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hash BLOB NOT NULL UNIQUE,
    height INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""


def resolve(path: str | Path) -> Path:
    """The replica folder: `path` itself, or a site folder's `ledger/`."""
    path = Path(path)
    if (path / FILENAME).exists():
        return path
    if (path / "ledger" / FILENAME).exists():
        return path / "ledger"
    raise StoreError(f"no ledger replica in {path} (looked for {FILENAME} and ledger/)")


class SqliteBlockStore(BlockStoreAPI):
    """Genesis, blocks in import order and the head of one replica."""

    def __init__(self, folder: str | Path, create: bool = False):
        folder = Path(folder)
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not (folder / FILENAME).exists():
            raise StoreError(f"no ledger replica in {folder}")
        self.folder = folder
        self.path = folder / FILENAME
        if not create and self.path.stat().st_size == 0:
            # sqlite would take it for a new database and write a schema in it.
            raise StoreError(f"{self.path}: damaged replica database (empty file)")
        with self._sqlite_errors():
            # One owner thread uses a replica; it may not be the thread that
            # opened it.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                if not create:
                    self._check_structure()
                self._db.executescript(_SCHEMA)
            except BaseException:
                self._db.close()
                raise

    def _check_structure(self) -> None:
        """sqlite's own page-level check (cheap next to re-executing the
        blocks): damage to a page that reading the blocks would never touch,
        such as an index, is found on open rather than at the next write."""
        (problem,) = self._db.execute("PRAGMA quick_check(1)").fetchone()
        if problem != "ok":
            raise StoreError(f"{self.path}: damaged replica database ({problem})")

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """sqlite's errors on a damaged (or unreadable) file, as a `StoreError`
        naming the file; the sqlite error stays attached as its cause.

        A damaged schema or text cell can also surface as a
        `UnicodeDecodeError` from the sqlite module: damage too.
        """
        try:
            yield
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path}: damaged replica database ({exc})") from exc

    def _blob(self, value: object, what: str) -> bytes:
        """A stored cell that must be bytes; any other type is damage."""
        if not isinstance(value, bytes):
            raise StoreError(
                f"{self.path}: damaged replica database ({what} is not a blob)"
            )
        return value

    def _meta(self, key: str) -> bytes | None:
        with self._sqlite_errors():
            row = self._db.execute(
                "SELECT value FROM meta WHERE key=?", (key,)
            ).fetchone()
        return None if row is None else self._blob(row[0], f"meta '{key}'")

    def genesis_json(self) -> str | None:
        value = self._meta("genesis")
        if value is None:
            return None
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise StoreError(f"{self.path}: the stored genesis is damaged") from None

    def genesis_hash(self) -> bytes | None:
        return self._meta("genesis_hash")

    def initialize(self, genesis_json: str, genesis_hash: bytes) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO meta VALUES "
                "('genesis', ?), ('genesis_hash', ?), ('head', ?)",
                (genesis_json.encode(), genesis_hash, genesis_hash),
            )

    def append(self, block_hash: bytes, height: int, data: bytes, head: bytes) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO blocks (hash, height, data) VALUES (?, ?, ?)",
                (block_hash, height, data + keccak(data)),
            )
            self._db.execute("UPDATE meta SET value=? WHERE key='head'", (head,))

    def set_head(self, head: bytes) -> None:
        with self._transaction():
            self._db.execute("UPDATE meta SET value=? WHERE key='head'", (head,))

    def blocks(self) -> Iterator[bytes]:
        with self._sqlite_errors():
            rows = self._db.execute(
                "SELECT seq, data FROM blocks ORDER BY seq"
            ).fetchall()
        for seq, stored in rows:
            stored = self._blob(stored, f"stored block #{seq}")
            data, checksum = stored[:-32], stored[-32:]
            if keccak(data) != checksum:
                raise StoreError(f"{self.path}: stored block #{seq} fails its checksum")
            yield data

    def stored_head(self) -> bytes | None:
        return self._meta("head")

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._sqlite_errors(), _Transaction(self._db):
            yield


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
