"""Scaling with processes: a CPU-bound handler on Redis, 1 process against 2.

    .venv/bin/python -m benchmarks.bench_processes [--messages 1500] [--work-ms 2] [--rounds 3]

Each message costs the handler about `--work-ms` of pure Python (calibrated here, in
this process, before the runs), so one process is bound by one core. Each run pre-fills
a fresh Redis stream, starts `relevo run --processes N` and times from the first
child's `ready` line until the queue is empty (a slight handicap for N > 1, whose later
children start the clock before they consume). The ratio to one process is what
matters: the machine may be shared, and then the absolute rates are noise; so each run
also reports messages per CPU second the app's processes actually got, which says
whether a second process costs anything beyond the core it needs. Needs Redis
at $RELEVO_REDIS_URL (default redis://127.0.0.1:6379/0); keys live under a throwaway
prefix, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

import relevo
from benchmarks.harness import table

URL = os.environ.get("RELEVO_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[1]

HANDLER = """\
LOOPS = {loops}

async def main(body):
    total = 0
    for n in range(LOOPS):
        total += n * n % 7
    return total
"""


def burn(loops: int) -> int:
    total = 0
    for n in range(loops):
        total += n * n % 7
    return total


def calibrate(work_s: float) -> int:
    """Loop count that takes about `work_s` here (the best of a few tries)."""
    loops = 10_000
    best = min(_timed(loops) for _ in range(5))
    return max(1, int(loops * work_s / best))


def _timed(loops: int) -> float:
    started = time.perf_counter()
    burn(loops)
    return time.perf_counter() - started


def app_folder(prefix: str, loops: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="relevo-bench-"))
    (folder / "handler.py").write_text(HANDLER.format(loops=loops))
    (folder / "app.yaml").write_text('version: "1.0"\nnamespace: bench\nentries:\n' +
                                     textwrap.indent(textwrap.dedent(f"""\
        - name: redis
          kind: queue.driver.redis
          url: {URL}
          key_prefix: '{prefix}'
          block: 100ms
          lifecycle: {{auto_start: true}}
        - name: tasks
          kind: queue.queue
          driver: redis
        - name: burn
          kind: function.python
          source: file://handler.py
        - name: worker
          kind: queue.consumer
          queue: tasks
          func: burn
          concurrency: 1
          prefetch: 20
          lifecycle: {{auto_start: true}}
        """), "  "))
    return folder / "app.yaml"


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(processes: int, messages: int, loops: int) -> tuple[float, float]:
    """Messages per second, and per CPU second of the processes that ran the app."""
    prefix = f"relevo-bench:{uuid.uuid4().hex[:8]}:"
    path = app_folder(prefix, loops)
    app = relevo.load(path)
    await app.open(start=False)
    process: asyncio.subprocess.Process | None = None
    try:
        for start in range(0, messages, 500):
            count = min(500, messages - start)
            await app.publish_batch("bench:tasks", [{"n": n} for n in range(count)])
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relevo", "run", str(path), "--processes", str(processes),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        )
        assert process.stdout is not None
        output = process.stdout
        cpu_at_ready: dict[int, float] = {}  # pid -> its CPU seconds when it got ready
        first_ready: list[float] = []
        all_ready = asyncio.Event()

        async def read() -> None:
            async for line in output:
                # one process: the app logs "running;" once started; several: each child "ready"
                found = re.search(rb"\(pid (\d+)\) ready", line)
                pid = int(found.group(1)) if found else None
                if pid is None and processes == 1 and b"running; press" in line:
                    pid = process.pid
                if pid is not None:
                    first_ready[:] = first_ready or [time.perf_counter()]
                    cpu_at_ready[pid] = cpu_s(pid)
                    if len(cpu_at_ready) == processes:
                        all_ready.set()

        reading = asyncio.create_task(read())
        await asyncio.wait_for(all_ready.wait(), 120)
        while True:  # the queue counts ready and in-flight messages: 0 once all are acked
            if (await app.info("bench:tasks"))["message_count"] == 0:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - first_ready[0]
        used = sum(cpu_s(pid) - before for pid, before in cpu_at_ready.items())
        process.terminate()
        await process.wait()
        await reading
        return messages / elapsed, messages / used
    finally:
        if process is not None and process.returncode is None:  # the run failed midway
            process.terminate()
            await process.wait()
        await app.close()
        async with Redis.from_url(URL) as client:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--work-ms", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loops = calibrate(args.work_ms / 1000)
    print(f"{os.cpu_count()} cores; handler: {loops:,} loops, about {args.work_ms} ms here; "
          f"{args.messages:,} messages pre-filled per run; best of {args.rounds} rounds, "
          "1 and 2 processes alternating (a shared machine drifts)")
    best = {1: (0.0, 0.0), 2: (0.0, 0.0)}
    for _ in range(args.rounds):
        for n in best:
            rate, per_cpu = asyncio.run(drain(n, args.messages, loops))
            best[n] = (max(best[n][0], rate), max(best[n][1], per_cpu))
    name = {1: "1 process", 2: "2 processes"}
    table("CPU-bound handler on Redis, draining a pre-filled queue",
          [(name[n], rate) for n, (rate, _) in best.items()], "1 process")
    table("The same, per CPU second the app's processes got (the machine's load aside)",
          [(name[n], per_cpu) for n, (_, per_cpu) in best.items()], "1 process",
          unit="msgs/cpu-s")


if __name__ == "__main__":
    main()
