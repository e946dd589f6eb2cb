"""`make demo`: publish 10,000 tasks, watch them drain, print what happened, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

HERE = Path(__file__).resolve().parent
TASKS = 10_000
DB = HERE / "results.db"
os.environ["QUICKSTART_DB"] = str(DB)
sys.path.insert(0, str(HERE))

from tasks import connect  # noqa: E402

import relevo  # noqa: E402


def make_tasks() -> list[dict[str, object]]:
    """Every 250th task is poison (always fails), every 40th is flaky (fails once)."""
    return [
        {"id": f"task-{n:05d}", "action": "process", "poison": n % 250 == 0,
         "flaky": n % 40 == 0}
        for n in range(TASKS)
    ]


def counts() -> tuple[int, int, int]:
    db = connect(DB)
    try:
        acked = db.execute("SELECT count(*) FROM results").fetchone()[0]
        nacked = db.execute("SELECT count(*) FROM failures").fetchone()[0]
        dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        db.close()
    return acked, nacked, dead


def reset_db() -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB}{suffix}").unlink(missing_ok=True)
    connect(DB).close()


async def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the failures are on purpose; keep the bar clean
    console = Console()
    app = relevo.load(HERE / "app.yaml")
    tasks = make_tasks()
    expected_dead = sum(1 for t in tasks if t["poison"])
    async with app:
        start = time.perf_counter()
        for i in range(0, TASKS, 1000):
            await app.publish_batch("app.queue:tasks", tasks[i : i + 1000])
        console.print(f"published {TASKS:,} tasks in {time.perf_counter() - start:.2f}s")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("processing", total=TASKS)
            deadline = time.monotonic() + 50
            while True:
                acked, nacked, dead = await asyncio.to_thread(counts)
                progress.update(bar, completed=acked + dead,
                                description=f"acked {acked:,} · nacked {nacked:,} · dead {dead:,}")
                if acked + dead >= TASKS or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - start
        queue = await app.info("app.queue:tasks")
    acked, nacked, dead = counts()
    table = Table(title="quick start on the memory driver", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in [
        ("tasks published", f"{TASKS:,}"),
        ("handler calls (processed)", f"{acked + nacked:,}"),
        ("acked", f"{acked:,}"),
        ("nacked (then retried)", f"{nacked:,}"),
        ("dead-lettered", f"{dead:,}"),
        ("left in the queue", f"{queue['message_count']:,}"),
        ("throughput", f"{TASKS / elapsed:,.0f} tasks/s"),
    ]:
        table.add_row(name, value)
    console.print(table)
    console.print(f"results are in {DB}; shut down gracefully.")
    ok = acked + dead == TASKS and dead == expected_dead and queue["message_count"] == 0
    if not ok:
        console.print("[red]not every task was accounted for[/red]")
    return 0 if ok else 1


if __name__ == "__main__":
    reset_db()
    sys.exit(asyncio.run(main()))
