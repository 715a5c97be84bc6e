"""Writes on the embedded SQLite database: statements on the event loop, waits on threads, writers queued fairly.

Each "process" here is a second :class:`SqliteDatabase` handle on the same file: its own connections and its own
descriptor of the writers' lock file, which is what another server process has.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from catalytic.storage import open_database
from catalytic.storage.database import _INLINE_MAX_BYTES, SqliteDatabase


async def _open(path: Path, sqlite_synchronous: str = "FULL") -> SqliteDatabase:
    db = await open_database(f"sqlite:///{path}", sqlite_synchronous=sqlite_synchronous)
    assert isinstance(db, SqliteDatabase)
    return db


async def _counter(db: SqliteDatabase) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await db.execute("INSERT OR IGNORE INTO counter (id, n) VALUES (1, 0)")


async def _ticks(stop: asyncio.Event, seen: list[int]) -> None:
    while not stop.is_set():
        seen[0] += 1
        await asyncio.sleep(0)


def test_concurrent_read_modify_write_from_two_processes_loses_nothing(tmp_path: Path) -> None:
    async def run() -> int:
        first, second = await _open(tmp_path / "c.db"), await _open(tmp_path / "c.db")
        await _counter(first)

        async def bump(db: SqliteDatabase) -> None:
            async with db.transaction() as conn:
                n = await conn.fetchval("SELECT n FROM counter WHERE id = 1")
                await asyncio.sleep(0)  # yield inside the transaction: the other writers must still wait
                await conn.execute("UPDATE counter SET n = $1 WHERE id = 1", n + 1)

        await asyncio.gather(*(bump(db) for _ in range(150) for db in (first, second)))
        total = int(await second.fetchval("SELECT n FROM counter WHERE id = 1"))
        await first.close()
        await second.close()
        return total

    assert asyncio.run(run()) == 300


@pytest.mark.parametrize("mode", ["NORMAL", "FULL"])
def test_a_transaction_runs_on_the_loop_and_a_syncing_commit_off_it(tmp_path: Path, mode: str) -> None:
    async def run() -> tuple[int, int, int]:
        db = await _open(tmp_path / "s.db", sqlite_synchronous=mode)
        await _counter(db)
        stop, seen = asyncio.Event(), [0]
        ticker = asyncio.create_task(_ticks(stop, seen))
        await asyncio.sleep(0)
        before = seen[0]
        async with db.transaction() as conn:
            for _ in range(20):
                await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            statements = seen[0] - before
        committed = seen[0] - before
        stop.set()
        await ticker
        n = int(await db.fetchval("SELECT n FROM counter WHERE id = 1"))
        await db.close()
        return statements, committed, n

    statements, committed, n = asyncio.run(run())
    assert statements == 0  # no statement of the transaction handed the loop to another task
    # In WAL mode only FULL syncs at commit; that wait runs on the writer's thread while the loop goes on.
    assert (committed > 0) == (mode == "FULL")
    assert n == 20


def test_a_queue_of_writers_drains_in_one_turn_once_the_lock_is_free(tmp_path: Path) -> None:
    async def run() -> int:
        db = await _open(tmp_path / "q.db", sqlite_synchronous="NORMAL")
        await _counter(db)
        stop, seen = asyncio.Event(), [0]
        ticker = asyncio.create_task(_ticks(stop, seen))
        release = asyncio.Event()

        async def holder() -> None:
            async with db.transaction() as conn:
                await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                await release.wait()

        finished: list[int] = []

        async def writer() -> None:
            await db.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            finished.append(seen[0])

        held = asyncio.create_task(holder())
        await asyncio.sleep(0.01)
        writers = [asyncio.create_task(writer()) for _ in range(50)]
        await asyncio.sleep(0.01)
        assert not finished
        release.set()
        await asyncio.gather(held, *writers)
        stop.set()
        await ticker
        assert await db.fetchval("SELECT n FROM counter WHERE id = 1") == 51
        await db.close()
        return max(finished) - min(finished)

    # With a first-in-first-out handover each writer would wait for its own turn of the loop: 49 turns.
    assert asyncio.run(run()) <= 2


def test_a_write_lock_held_elsewhere_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "w.db"

    async def run() -> tuple[int, int]:
        db = await _open(path)
        await _counter(db)
        # A writer that does not queue on the writers' file (the sqlite3 shell, a migration) holds the lock.
        foreign = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        foreign.execute("BEGIN IMMEDIATE")
        stop, seen = asyncio.Event(), [0]
        ticker = asyncio.create_task(_ticks(stop, seen))
        write = asyncio.create_task(db.execute("UPDATE counter SET n = n + 1 WHERE id = 1"))
        await asyncio.sleep(0.3)
        assert not write.done()
        ticks_while_waiting = seen[0]
        foreign.execute("COMMIT")
        foreign.close()
        await write
        stop.set()
        await ticker
        n = int(await db.fetchval("SELECT n FROM counter WHERE id = 1"))
        await db.close()
        return ticks_while_waiting, n

    ticks, n = asyncio.run(run())
    assert ticks > 100  # the loop ran other tasks the whole time
    assert n == 1


def test_large_arguments_are_written_off_the_loop_and_read_back(tmp_path: Path) -> None:
    blob = bytes(range(256)) * (_INLINE_MAX_BYTES // 256 + 1)

    async def run() -> tuple[bytes, set[str]]:
        db = await _open(tmp_path / "b.db")
        threads: set[str] = set()

        def note_thread() -> int:
            threads.add(threading.current_thread().name)
            return 0

        db._writer.create_function("thread_name", 0, note_thread)
        await db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB, mark INTEGER)")
        await db.execute("INSERT INTO blobs (id, data, mark) VALUES (1, $1, thread_name())", blob)
        await db.execute("INSERT INTO blobs (id, data, mark) VALUES (2, $1, thread_name())", b"small")
        data = await db.fetchval("SELECT data FROM blobs WHERE id = 1")
        await db.close()
        return bytes(data), threads

    data, threads = asyncio.run(run())
    assert data == blob
    assert threads == {"MainThread", next(t for t in threads if t.startswith("catalytic-sqlite-writer"))}


@pytest.mark.parametrize(("mode", "code"), [("FULL", 2), ("NORMAL", 1)])
def test_the_synchronous_setting_reaches_the_writing_connection(tmp_path: Path, mode: str, code: int) -> None:
    async def run() -> int:
        db = await _open(tmp_path / "p.db", sqlite_synchronous=mode)
        value = int(await db.fetchval("PRAGMA synchronous"))
        await db.close()
        return value

    assert asyncio.run(run()) == code


def test_an_unknown_synchronous_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        asyncio.run(open_database(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="SOMETIMES"))


def test_a_transaction_cancelled_while_waiting_rolls_back_and_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "x.db"

    async def run() -> tuple[int, int]:
        db = await _open(path)
        other = await _open(path)
        await _counter(db)
        blocked = asyncio.Event()

        async def slow_other() -> None:
            async with other.transaction() as conn:
                await conn.execute("UPDATE counter SET n = n + 100 WHERE id = 1")
                blocked.set()
                await asyncio.sleep(0.3)

        holder = asyncio.create_task(slow_other())
        await blocked.wait()
        waiting = asyncio.create_task(db.execute("UPDATE counter SET n = n + 1 WHERE id = 1"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await holder
        await db.execute("UPDATE counter SET n = n + 10 WHERE id = 1")
        n = int(await other.fetchval("SELECT n FROM counter WHERE id = 1"))
        in_transaction = int(db._writer.in_transaction)
        await db.close()
        await other.close()
        return n, in_transaction

    assert asyncio.run(run()) == (110, 0)


def test_a_begin_cancelled_while_waiting_for_a_foreign_lock_leaves_no_transaction_open(tmp_path: Path) -> None:
    path = tmp_path / "b.db"

    async def run() -> tuple[int, int, int]:
        db = await _open(path)
        await _counter(db)
        foreign = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        foreign.execute("BEGIN IMMEDIATE")
        # BEGIN IMMEDIATE waits on the writer's thread; the caller gives up, and the lock is let go a moment later.
        write = asyncio.create_task(db.execute("UPDATE counter SET n = n + 1 WHERE id = 1"))
        await asyncio.sleep(0.2)
        write.cancel()
        threading.Timer(0.2, lambda: (foreign.execute("COMMIT"), foreign.close())).start()
        with pytest.raises(asyncio.CancelledError):
            await write
        await db.execute("UPDATE counter SET n = n + 10 WHERE id = 1")
        in_transaction = int(db._writer.in_transaction)
        n = int(await db.fetchval("SELECT n FROM counter WHERE id = 1"))
        # The file is free for another writer: nothing still holds its lock.
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()
        await db.close()
        return n, in_transaction, 1

    assert asyncio.run(run()) == (10, 0, 1)
