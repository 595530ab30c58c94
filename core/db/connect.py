"""Open the database: WAL, foreign keys, busy timeout, migrations, owner-only file mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from functools import partial
from importlib import resources
from pathlib import Path
from urllib.request import pathname2url

import aiosqlite

from evopilot.core.errors import EvopilotError
from evopilot.core.quoting import quote

BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_AT = 4 * 1024 * 1024  # WAL bytes (SQLite's own default: 1,000 pages of 4 KiB)
CHECKPOINT_PASSES = 4
WAL_MOST = 2 * CHECKPOINT_AT  # past this a COMMIT waits for the checkpoint (see Connection)


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


class Connection(aiosqlite.Connection):
    """aiosqlite's connection, whose statements run on the event loop's own thread while
    aiosqlite's thread has nothing to do.

    A round trip through that thread costs 100-200 us of CPU on a 2-core machine, a statement
    on this database 5-100 us, and an evolution iteration makes ~90 of them. Nothing waits for a
    lock on the loop: the connection's busy timeout is 0 there, and a statement refused as busy
    goes to the thread, which waits up to ``BUSY_TIMEOUT_MS``; while anything is queued there,
    every later statement queues behind it, so statements keep their order. Each statement
    still yields to the loop once, as it did, so a task that only reads lets others run.

    Checkpoints (copying the WAL into the database, tens of ms) are not made by a COMMIT on
    the loop either: this connection's automatic ones are off, and a COMMIT that leaves the WAL
    over ``CHECKPOINT_AT`` has a passive checkpoint made by a connection of its own in a
    worker thread (it waits for no one). The WAL is cut back when it starts over
    (``journal_size_limit``), so its size is what was written since. A writer faster than the
    checkpoints (a slow disk) would grow it without end: a COMMIT that leaves it over
    ``WAL_MOST`` waits for the running checkpoint, whose next pass then finds no new frames.
    """

    def __init__(self, connector, database: Path | None) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._queued = 0  # calls handed to aiosqlite's thread and not finished there
        self._database = database  # None: nothing to checkpoint (read-only)
        self._checkpointer: asyncio.Future | None = None
        self._checkpoint_con: sqlite3.Connection | None = None

    async def _execute(self, fn, *args, **kwargs):
        if not self._queued and self._connection is not None:
            try:
                result = fn(*args, **kwargs)
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
            else:
                if args and args[0] == "COMMIT" and self._checkpoint_if_due() >= WAL_MOST:
                    await asyncio.shield(self._checkpointer)
                else:
                    await asyncio.sleep(0)
                return result
        return await self._in_thread(partial(fn, *args, **kwargs))

    def _checkpoint_if_due(self) -> int:
        """The WAL's size; a checkpoint is running (started here if none was) when it is
        CHECKPOINT_AT or more."""
        if self._database is None:
            return 0
        try:
            size = os.stat(f"{self._database}-wal").st_size
        except OSError:
            return 0
        if size >= CHECKPOINT_AT and (self._checkpointer is None or self._checkpointer.done()):
            self._checkpointer = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
            self._checkpointer.add_done_callback(lambda f: f.cancelled() or f.exception())
        return size

    def _checkpoint(self) -> None:
        """In a worker thread, one at a time. Again while the loop wrote meanwhile (a few
        times at most): the WAL starts over only once all of it is in the database."""
        if self._checkpoint_con is None:
            self._checkpoint_con = sqlite3.connect(self._database, timeout=0, isolation_level=None,
                                                   check_same_thread=False)
        for _ in range(CHECKPOINT_PASSES):
            busy, frames, copied = self._checkpoint_con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy or frames == copied:
                return

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.gather(self._checkpointer, return_exceptions=True)
        if self._checkpoint_con is not None:
            self._checkpoint_con.close()
            self._checkpoint_con = None
        await super().close()

    async def _in_thread(self, function):
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        loop = asyncio.get_running_loop()
        future, released = loop.create_future(), loop.create_future()
        self._queued += 2
        future.add_done_callback(self._thread_done)
        released.add_done_callback(self._thread_done)
        self._tx.put_nowait((future, partial(self._waiting, function)))
        # aiosqlite's thread keeps its last call's result until its next call: a cursor with
        # rows left (a PRAGMA's) would hold its statement open, and every COMMIT made here
        # after would fail ("SQL statements in progress"). A call that returns nothing next.
        self._tx.put_nowait((released, _nothing))
        # shielded: a caller cancelled does not end the call in the thread, and the count
        # must go down only when the thread is done with it
        return await asyncio.shield(future)

    def _thread_done(self, future: asyncio.Future) -> None:
        self._queued -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a cancelled caller's error is not logged as lost

    def _waiting(self, function):
        """In aiosqlite's thread: the call, allowed to wait for another process's lock."""
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            return function()
        finally:
            with contextlib.suppress(sqlite3.ProgrammingError):  # the call closed the connection
                conn.execute("PRAGMA busy_timeout = 0")


def _nothing() -> None:
    return None


def _connector(database: str, **kwargs) -> sqlite3.Connection:
    # timeout=0: no busy wait on the event loop's thread (see Connection)
    return sqlite3.connect(database, timeout=0, check_same_thread=False, isolation_level=None, **kwargs)


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
            db = await Connection(partial(_connector, f"file:{pathname2url(str(path))}?mode=ro&immutable=1",
                                          uri=True), None)
        else:
            db = await Connection(partial(_connector, str(path)), path)
    except sqlite3.Error as e:
        raise EvopilotError(f"{path}: cannot open database: {e}") from None
    db.row_factory = aiosqlite.Row
    try:
        if not read_only:
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA wal_autocheckpoint = 0")  # see Connection
            await db.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_AT // 4}")
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
    ((current,),) = await db.execute_fetchall("PRAGMA user_version")
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
            ((now,),) = await db.execute_fetchall("PRAGMA user_version")
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
