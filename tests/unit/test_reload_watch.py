"""The watcher behind `relevo run --reload`: no change to a watched file goes unseen."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from relevo.config.build import load_registry
from relevo.reload.watch import watch_config
from tests.appfiles import write_app
from tests.waiting import wait_until

APP = """\
- name: mem
  kind: queue.driver.memory
- name: fn
  kind: function.python
  source: file://handler.py
"""


async def test_a_file_written_while_a_reload_runs_is_reloaded_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The watch is set up again after each reload; a write that lands between the
    reload reading its files and the new watch is a change all the same."""
    caplog.set_level(logging.INFO, logger="relevo.reload")
    path = write_app(tmp_path, APP, handler__py="def main(body):\n    return 1\n")
    handler = tmp_path / "handler.py"
    registry = load_registry(path)
    stop = asyncio.Event()
    reloads = 0

    async def on_change() -> None:
        nonlocal reloads
        reloads += 1
        if reloads == 1:  # a second save, while this reload is still running
            handler.write_text("def main(body):\n    return 22\n")
        else:
            stop.set()

    watcher = asyncio.create_task(watch_config(path, lambda: registry, on_change, stop))
    try:
        await wait_until(lambda: "watching 2 files" in caplog.text, 10, "the watch")
        handler.write_text("def main(body):\n    return 2\n")
        await wait_until(lambda: reloads == 2, 10, "a reload for the second save")
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 10)


async def test_a_file_a_reload_names_for_the_first_time_and_is_saved_meanwhile_is_reloaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reload that starts watching a new handler file read it at a moment the
    watcher does not know: a save to it during that reload counts as a change."""
    caplog.set_level(logging.INFO, logger="relevo.reload")
    path = write_app(tmp_path, APP, handler__py="def main(body):\n    return 1\n")
    second = tmp_path / "second.py"
    second.write_text("def main(body):\n    return 1\n")
    registry = load_registry(path)
    stop = asyncio.Event()
    reloads = 0

    async def on_change() -> None:
        nonlocal reloads, registry
        reloads += 1
        if reloads == 1:  # the new config names second.py, which is saved again at once
            registry = load_registry(path)
            second.write_text("def main(body):\n    return 2\n")
        else:
            stop.set()

    watcher = asyncio.create_task(watch_config(path, lambda: registry, on_change, stop))
    try:
        await wait_until(lambda: "watching 2 files" in caplog.text, 10, "the watch")
        write_app(tmp_path, APP + "- name: fn2\n  kind: function.python\n"
                  "  source: file://second.py\n")
        await wait_until(lambda: reloads == 2, 10, "a reload for the save during the first")
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 10)
