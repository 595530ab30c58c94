"""Open the database: WAL, foreign keys, busy timeout, migrations, owner-only file mode."""

from __future__ import annotations

import os
import sqlite3
from importlib import resources
from pathlib import Path

import aiosqlite

from evopilot.core.errors import EvopilotError

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


async def connect(path: Path) -> aiosqlite.Connection:
    if not path.exists():
        _create_private(path)
    try:
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as e:
        raise EvopilotError(f"{path}: cannot open database: {e}") from None
    db.row_factory = aiosqlite.Row
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA synchronous = NORMAL")
        await migrate(db, path)
    except sqlite3.DatabaseError as e:
        await db.close()
        raise EvopilotError(f"{path}: not a usable evopilot database: {e}") from None
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
