"""The store: WAL, foreign keys, migrations in user_version, owner-only files, data kept."""

from __future__ import annotations

import json
import sqlite3

from evopilot.core.db.connect import latest_version


def test_schema_version_wal_and_refusing_a_newer_database(cli, home):
    assert cli("project", "list")[0] == 0
    db = sqlite3.connect(home / "evopilot.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {latest_version() + 1}")
    db.commit()
    db.close()
    code, _, err = cli("project", "list")
    assert code == 2 and "newer than this evopilot understands" in err and err.count("\n") == 1


def test_not_a_database_is_a_clear_error(cli, home):
    home.mkdir(parents=True)
    (home / "evopilot.db").write_bytes(b"this is not sqlite" * 100)
    code, _, err = cli("jobs")
    assert code == 2 and "not a usable evopilot database" in err


def _corrupt_page(db_file, table: str) -> None:
    """Overwrite the root page of ``table`` with garbage: one bad page, as a disk fault leaves."""
    with sqlite3.connect(db_file) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    with open(db_file, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)


def test_a_corrupted_page_is_one_line_with_the_recovery_and_the_file_is_kept(cli, home):
    assert cli("jobs")[0] == 0
    db_file = home / "evopilot.db"
    _corrupt_page(db_file, "jobs")
    before = db_file.read_bytes()
    code, _, err = cli("jobs")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "corrupted" in err and f"sqlite3 {db_file} .recover" in err
    assert db_file.read_bytes() == before  # never overwritten: its data can still be recovered


def test_a_read_only_data_directory_serves_reads_and_refuses_writes_in_one_line(
        cli, home, make_project, tmp_path, mount):
    root = make_project({"benchmarks/a.py": "print(1)\n"})
    assert cli("project", "add", root)[0] == 0
    mount("--bind", str(home), at=home)
    mount("-o", "remount,ro,bind", at=home)
    code, out, err = cli("jobs", "--json")
    assert (code, json.loads(out)) == (0, []), err
    code, out, err = cli("project", "list")
    assert code == 0 and "proj" in out, err
    code, _, err = cli("run", "proj", "a.py")
    assert code == 2 and err.count("\n") == 1 and "read-only" in err.lower(), err
    # a data directory that cannot even be created
    code, _, err = cli("jobs", "--home", home / "new")
    assert code == 2 and err.count("\n") == 1 and f"{home / 'new'}" in err, err


def test_removing_a_project_keeps_its_jobs(cli, make_project):
    root = make_project({"benchmarks/a.py": "print('[1/1]')\n"})
    cli("project", "add", root)
    assert cli("run", "proj", "a.py", "--wait")[0] == 0
    assert cli("project", "rm", "proj")[0] == 0
    assert json.loads(cli("bench", "list", "--json")[1]) == []
    _setup, job = json.loads(cli("jobs", "--json")[1])
    assert job["project"] is None and job["status"] == "succeeded"


def test_project_and_benchmark_errors(cli, make_project, tmp_path):
    root = make_project({"benchmarks/a.py": "", "other.py": ""})
    assert cli("project", "add", tmp_path / "missing")[0] == 2
    assert cli("project", "add", root)[0] == 0
    code, _, err = cli("project", "add", root)
    assert code == 2 and "already exists" in err
    outside = tmp_path / "outside.py"
    outside.write_text("")
    code, _, err = cli("bench", "add", "proj", outside)
    assert code == 2 and "outside the project" in err
    code, _, err = cli("bench", "add", "proj", root / "nope.py")
    assert code == 2 and "no such file" in err
    code, _, err = cli("bench", "add", "proj", root / "benchmarks" / "a.py")
    assert code == 2 and "already in the project" in err
    code, out, _ = cli("bench", "add", "proj", root / "other.py")
    assert code == 0 and "other.py" in out
    code, _, err = cli("run", "proj", "zzz.py")
    assert code == 2 and "no benchmark 'zzz.py'" in err


async def test_a_task_cancelled_while_beginning_leaves_no_open_transaction(home):
    """Closing the loop cancels its host passes, maybe while one is at BEGIN; the BEGIN still
    runs in aiosqlite's thread, and must not leave the shared connection inside a transaction."""
    import asyncio

    from evopilot.core.db import connect as db_connect, jobs as jobs_db

    home.mkdir(parents=True)
    db = await db_connect.connect(home / "evopilot.db")
    try:
        async def write() -> None:
            async with jobs_db.transaction(db):
                await jobs_db.set_meta(db, "k", "1")

        for _ in range(20):  # the cancel lands at various points of BEGIN
            task = asyncio.create_task(write())
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            async with jobs_db.transaction(db):  # "cannot start a transaction within a transaction"
                await jobs_db.set_meta(db, "k", "2")
        assert await jobs_db.meta(db, "k") == "2"
    finally:
        await db.close()


async def test_a_loop_waiting_for_jobs_does_not_count_another_tasks_uncommitted_end(home):
    """``run_forever(until_done=...)`` stops on ``count_unfinished`` and then cancels its host
    passes; a pass cancelled inside its transaction rolls back the ends it wrote. Read on the
    shared connection while that transaction was open, those ends were counted: the loop
    returned with jobs that were running again. The count waits for the transaction's end."""
    import asyncio

    from evopilot.core.config import Config
    from evopilot.core.db import jobs as jobs_db
    from evopilot.core.engine import Engine

    async with await Engine.open(Config(), home) as engine:
        await engine.set_queue_paused(True)
        job = await engine.submit("true", name="j")
        inside, never = asyncio.Event(), asyncio.Event()

        async def pass_cancelled_after_its_write() -> None:
            async with jobs_db.transaction(engine.db):
                await jobs_db.update_job(engine.db, job.id, status="succeeded")
                inside.set()
                await never.wait()

        writer = asyncio.create_task(pass_cancelled_after_its_write())
        await inside.wait()
        count = asyncio.create_task(jobs_db.count_unfinished(engine.db, [job.id]))
        await asyncio.wait([count], timeout=1)  # read now, or waiting its turn
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        assert await count == 1
        assert (await engine.job(job.id)).status.value == "queued"


async def test_a_write_lock_held_by_another_process_is_waited_for_off_the_event_loop(home):
    """Statements run on the loop's own thread, but a lock another process holds is waited for
    in aiosqlite's thread: the loop goes on meanwhile, and the transaction then goes through."""
    import asyncio
    import subprocess
    import sys
    import time

    from evopilot.core.db import connect as db_connect, jobs as jobs_db

    home.mkdir(parents=True)
    db = await db_connect.connect(home / "evopilot.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(home / 'evopilot.db')!r}, isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE'); c.execute(\"INSERT INTO meta VALUES ('held', '1')\")\n"
         "print('locked', flush=True); time.sleep(1.0); c.execute('COMMIT')"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        ticks, gaps = [], []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        started = time.monotonic()
        async with jobs_db.transaction(db):
            await jobs_db.set_meta(db, "mine", "2")
        waited = time.monotonic() - started
        t.cancel()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert waited > 0.5, "the transaction began only once the other process committed"
        assert max(gaps) < 0.3, f"the event loop stood still for {max(gaps):.2f} s"
        assert await jobs_db.meta(db, "held") == "1" and await jobs_db.meta(db, "mine") == "2"
    finally:
        holder.wait(5)
        await db.close()


async def test_the_wal_is_checkpointed_beside_the_loop_and_stays_bounded(home):
    """COMMITs on the loop make no checkpoint; one made in a worker thread keeps the WAL from
    growing with every write, also when the disk is slow (CI's was: the WAL reached 13 MB there,
    the checkpoints never catching up with the writes)."""
    import asyncio
    import time

    from evopilot.core.db import connect as db_connect, jobs as jobs_db

    home.mkdir(parents=True)
    db = await db_connect.connect(home / "evopilot.db")
    wal = home / "evopilot.db-wal"
    made = []
    checkpoint = db._checkpoint


    def slow_checkpoint():  # a slow disk: each checkpoint takes as long as ~25 commits
        made.append(1)
        time.sleep(0.05)
        checkpoint()

    db._checkpoint = slow_checkpoint
    try:
        largest = 0
        for i in range(400):  # 400 x 64 KiB of new rows: 25 MiB written
            async with jobs_db.transaction(db):
                await jobs_db.set_meta(db, f"k{i}", "x" * 65536)
            largest = max(largest, wal.stat().st_size)
            await asyncio.sleep(0.002)
        assert largest < 3 * db_connect.CHECKPOINT_AT, f"the WAL grew to {largest} bytes"
        assert 3 <= len(made) <= 40, f"{len(made)} checkpoints: one per commit, not per CHECKPOINT_AT written"
    finally:
        await db.close()


async def test_a_database_locked_while_it_is_opened_still_takes_transactions(home):
    """Four `run`s starting at once on a new database: one opening it while another holds it
    waits in aiosqlite's thread for its journal mode; the answer left there (a row not read)
    kept a statement open, and every later COMMIT failed with "SQL statements in progress"."""
    import subprocess
    import sys

    from evopilot.core.db import connect as db_connect, jobs as jobs_db

    home.mkdir(parents=True)
    path = home / "evopilot.db"
    db_connect._create_private(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, time\n"
         f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(0.5); c.execute('COMMIT')"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        db = await db_connect.connect(path)
        try:
            for i in range(3):
                async with jobs_db.transaction(db):
                    await jobs_db.set_meta(db, "k", str(i))
            assert await jobs_db.meta(db, "k") == "2"
        finally:
            await db.close()
    finally:
        holder.wait(5)
