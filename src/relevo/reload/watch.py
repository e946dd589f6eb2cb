"""Watching the files a config is made of, with watchfiles (inotify, FSEvents, ...).

The watched set is the config file (or every `*.yaml`/`*.yml` under a config folder,
new ones included) plus every `file://` file its entries name. It is computed again
after each change, so a handler file named by a reload is watched from then on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchfiles import Change, awatch

from relevo.config.yaml_source import config_files
from relevo.registry import Registry
from relevo.reload.diff import referenced_files

log = logging.getLogger("relevo.reload")

DEBOUNCE_MS = 300  # an editor's save is often several writes: take them as one change
WATCHING_CHECK_MS = 500  # how often the watch thread looks up from waiting
MTIME_SLACK_NS = 50_000_000  # file times come from a coarse clock that may lag time_ns()


def watched_files(root: Path, registry: Registry) -> set[str]:
    files = {root.resolve()} if root.is_file() else {p.resolve() for p in config_files(root)}
    for entry in registry:
        files.update(p.resolve() for p in referenced_files(entry))
    return {str(p) for p in files}


def _snapshot(root: Path, files: set[str]) -> dict[str, tuple[int, int] | None]:
    """Size and modification time of each watched file, and of any new config file."""
    names = files | ({str(p.resolve()) for p in config_files(root)} if root.is_dir() else set())
    found: dict[str, tuple[int, int] | None] = {}
    for name in names:
        try:
            stat = os.stat(name)
            found[name] = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            found[name] = None
    return found


def _unknown_if_newer(state: tuple[int, int] | None, since_ns: int) -> tuple[int, int] | None:
    """`state`, or (-1, -1) (which no file has) when the file changed after `since_ns`."""
    if state is not None and since_ns and state[0] >= since_ns:
        return (-1, -1)
    return state


def _folder(root: Path) -> Path | None:
    return root.resolve() if root.is_dir() else None


async def watch_config(
    root: Path,
    current: Callable[[], Registry],
    on_change: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """Call `on_change` after each change to a watched file, until `stop` is set.

    `current()` gives the registry whose files to watch (the last one that loaded).
    """
    folder = _folder(root)
    seen: dict[str, tuple[int, int] | None] = {}
    reload_began_ns = 0
    while not stop.is_set():
        files = watched_files(root, current())
        dirs = sorted({os.path.dirname(f) for f in files} | ({str(folder)} if folder else set()))

        def wanted(change: Change, path: str, files: set[str] = files) -> bool:
            path = os.path.realpath(path)
            return path in files or (
                folder is not None and path.endswith((".yaml", ".yml"))
                and path.startswith(str(folder) + os.sep)
            )

        # What the last reload read, not what is there now: a file written while that
        # reload ran, or between it and this watch, is a change still to apply. A file
        # that reload named for the first time was read at a moment not known here: if
        # it was written since the reload began, it is read once more.
        before = {name: seen.get(name, _unknown_if_newer(state, reload_began_ns))
                  for name, state in _snapshot(root, files).items()}
        changed = False
        # yield_on_timeout: the first (empty) batch proves the watch is in place; what
        # changed before that is caught by comparing with the snapshot taken before it
        changes = awatch(*dirs, watch_filter=wanted, stop_event=stop, debounce=DEBOUNCE_MS,
                         recursive=folder is not None, yield_on_timeout=True,
                         rust_timeout=WATCHING_CHECK_MS)
        first = True
        try:
            async for batch in changes:
                if first:
                    first = False
                    log.info("watching %d files for changes", len(files))
                    if _snapshot(root, files) != before:
                        batch = batch or {(Change.modified, "")}
                if batch:
                    changed = True
                    break
        finally:
            await changes.aclose()
        if not changed:
            return
        log.info("config changed; reloading")
        seen = _snapshot(root, files)
        reload_began_ns = time.time_ns() - MTIME_SLACK_NS
        await on_change()
