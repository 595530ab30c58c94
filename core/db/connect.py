"""Open the database: WAL, foreign keys, busy timeout, migrations, owner-only file mode."""

from __future__ import annotations

import os
import shutil
import sqlite3
from importlib import resources
from pathlib import Path
from urllib.request import pathname2url

import aiosqlite

from evopilot.core.errors import EvopilotError
from evopilot.core.quoting import quote

BUSY_TIMEOUT_MS = 10_000


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    out = []
    for entry in resources.files("evopilot.core.db").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def latest_version() -> int:
    return migrations()[-1][0]


def _create_private(path: Path) -> None:
    """Create the database file readable by the owner only (SQLite gives its -wal and -shm
    files the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def database_error(path: Path, e: sqlite3.Error) -> EvopilotError:
    """One line for a database that cannot be used, saying what to do. A corrupted one is never
    touched: its data can still be recovered from it."""
    name = getattr(e, "sqlite_errorname", "")
    if name == "SQLITE_CORRUPT":
        return EvopilotError(
            f"{path} is corrupted ({e}); evopilot leaves it as it is: recover its data with "
            f"`sqlite3 {quote(str(path))} .recover | sqlite3 RECOVERED.db`, then put "
            f"RECOVERED.db in its place")
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and no_space(path.parent)):
        return EvopilotError(f"no space left on {path.parent}: free some space and run the "
                             "command again (the database is intact)")
    if name.startswith("SQLITE_READONLY"):
        return EvopilotError(f"{path} is read-only here ({path.parent} cannot be written): "
                             "this command needs to write it")
    return EvopilotError(f"{path}: not a usable evopilot database: {e}")


def no_space(directory: Path, need: int = 64 * 1024) -> bool:
    """Whether the filesystem of ``directory`` is (all but) full."""
    try:
        return shutil.disk_usage(directory).free < need
    except OSError:
        return False


async def connect(path: Path) -> aiosqlite.Connection:
    # A data directory we cannot write (a read-only mount): read the database as it is, for
    # the commands that only read. WAL needs its -shm file, which cannot be created there;
    # nothing can change the file meanwhile, so ``immutable`` is true.
    read_only = path.exists() and not os.access(path.parent, os.W_OK)
    if not path.exists():
        try:
            _create_private(path)
        except OSError as e:
            raise EvopilotError(f"cannot create the database {path}: {e.strerror}") from None
    try:
        if read_only:
            db = await aiosqlite.connect(f"file:{pathname2url(str(path))}?mode=ro&immutable=1", uri=True,
                                         isolation_level=None)
        else:
            db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as e:
        raise EvopilotError(f"{path}: cannot open database: {e}") from None
    db.row_factory = aiosqlite.Row
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not read_only:
            await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA synchronous = NORMAL")
        await migrate(db, path)
    except sqlite3.DatabaseError as e:
        await db.close()
        raise database_error(path, e) from None
    except BaseException:
        await db.close()
        raise
    return db


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    (current,) = await (await db.execute("PRAGMA user_version")).fetchone()
    latest = latest_version()
    if current > latest:
        raise EvopilotError(
            f"{path}: database schema version {current} is newer than this evopilot "
            f"understands ({latest}); upgrade evopilot"
        )
    for version, name, sql in migrations():
        if version <= current:
            continue
        # one transaction per migration; user_version moves with it
        await db.execute("BEGIN IMMEDIATE")
        try:
            (now,) = await (await db.execute("PRAGMA user_version")).fetchone()
            if now >= version:  # another process migrated meanwhile
                await db.execute("ROLLBACK")
                continue
            for stmt in _statements(sql):
                await db.execute(stmt)
            await db.execute(f"PRAGMA user_version = {version}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise EvopilotError(f"{path}: migration {name} failed") from None


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    out, buf = [], []
    for line in sql.splitlines(keepends=True):
        buf.append(line)
        if sqlite3.complete_statement("".join(buf)):
            stmt = "".join(buf).strip()
            if stmt and not all(l.strip().startswith("--") or not l.strip() for l in buf):
                out.append(stmt)
            buf = []
    return out
