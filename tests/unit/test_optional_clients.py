"""A memory-only application never loads the broker and database clients (aio-pika,
redis-py, psycopg): the drivers' catalog imports each driver's code on first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CLIENTS = ("aio_pika", "redis", "psycopg", "psycopg_pool")


def test_a_memory_application_runs_without_importing_any_broker_client(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.yaml").write_text(textwrap.dedent("""\
        version: "1.0"
        namespace: app
        entries:
          - {name: mem, kind: queue.driver.memory}
          - {name: tasks, kind: queue.queue, driver: mem}
        """))
    code = textwrap.dedent(f"""\
        import asyncio, sys, relevo

        async def main():
            async with relevo.load({str(tmp_path / "app.yaml")!r}) as app:
                await app.publish("app:tasks", {{"n": 1}})

        asyncio.run(main())
        print(sorted(m for m in {CLIENTS!r} if m in sys.modules))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
