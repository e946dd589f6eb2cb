"""The quick-start handlers: do a little real work per task and keep the result in SQLite.

Plain `def` handlers run in worker threads, so the blocking SQLite calls never stall the
event loop. Each thread keeps its own connection.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import relevo

DB_PATH = Path(os.environ.get("QUICKSTART_DB", Path(__file__).with_name("results.db")))
_local = threading.local()

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (task_id TEXT PRIMARY KEY, digest TEXT, attempts INTEGER);
CREATE TABLE IF NOT EXISTS failures (task_id TEXT, attempt INTEGER, error TEXT);
CREATE TABLE IF NOT EXISTS dead_letters (task_id TEXT PRIMARY KEY, reason TEXT,
                                         attempts INTEGER, original_queue TEXT, at TEXT);
"""


def connect(path: Path = DB_PATH) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def _db() -> sqlite3.Connection:
    db: sqlite3.Connection | None = getattr(_local, "db", None)
    if db is None:
        db = _local.db = connect()
    return db


class TaskFailed(Exception):
    """A task that cannot be processed (this time)."""


def process_task(task: dict[str, Any], attempt: int) -> str:
    """The work: hash the task 200 times over. Some tasks fail on purpose."""
    if task.get("poison"):
        raise TaskFailed(f"task {task['id']} is malformed")
    if task.get("flaky") and attempt == 1:
        raise TaskFailed(f"task {task['id']} hit a transient error")
    digest = task["id"].encode()
    for _ in range(200):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def handle_task(task: dict[str, Any]) -> str:
    message = relevo.message()
    try:
        digest = process_task(task, message.attempts)
    except TaskFailed as exc:
        _db().execute("INSERT INTO failures VALUES (?, ?, ?)",
                      (task["id"], message.attempts, str(exc)))
        raise  # nack: retried, and dead-lettered after max_attempts
    _db().execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)",
                  (task["id"], digest, message.attempts))
    return digest  # ack


def file_dead_letter(task: dict[str, Any]) -> None:
    message = relevo.message()
    _db().execute(
        "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?)",
        (task["id"], message.header("x_dead_letter_reason"), message.attempts,
         message.header("x_original_queue"), message.header("x_dead_letter_time")),
    )
