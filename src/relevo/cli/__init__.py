"""The `relevo` command: parse arguments, then call the Python API. Nothing else lives here.

The commands on one broker queue (publish, info, peek, requeue, purge) are in
`queue_commands.py`; ending a command on a user's error (message, exit status 1) in
`exits.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

import click

from relevo.app import App, check_functions
from relevo.cli.exits import load_or_exit, run_or_exit
from relevo.cli.queue_commands import QUEUE_COMMANDS
from relevo.durations import parse_duration_s
from relevo.errors import ConfigError, RelevoError, StopTimeout
from relevo.logs.formats import FORMATS, configure
from relevo.process.parent import Limits, run_parent
from relevo.process.policy import check_shareable
from relevo.process.sizes import parse_size


@click.group()
@click.version_option(package_name="relevo", prog_name="relevo")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(log_level: str) -> None:
    """relevo: asynchronous message processing declared in YAML."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.argument("path", type=click.Path())
@click.option("--no-import", is_flag=True,
              help="Check the config only: do not import Python handlers or compile Lua.")
def validate(path: str, no_import: bool) -> None:
    """Check a config file or folder, load its handlers, and list its entries."""
    app = load_or_exit(path)
    if not no_import:
        try:
            asyncio.run(check_functions(app.registry))
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
    for entry in sorted(app.registry, key=lambda e: e.id):
        auto = " auto_start" if entry.head.lifecycle.auto_start else ""
        click.echo(f"{entry.id:<40} {entry.kind:<22} {entry.file}:{entry.line}{auto}")
    click.echo(f"ok: {len(app.registry.entries)} entries")


class _Size(click.ParamType):  # type: ignore[type-arg]
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@main.command()
@click.argument("path", type=click.Path())
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes, each running the app, under one parent.")
@click.option("--max-messages-per-process", type=click.IntRange(min=1), default=None,
              help="Replace a process after it has handled this many messages.")
@click.option("--max-memory-per-process", type=_Size(), default=None, metavar="SIZE",
              help="Replace a process whose resident memory passes SIZE (512MB, 1GB).")
@click.option("--reload", is_flag=True,
              help="Apply changes to the config files and the handler files they name.")
@click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
              help="json: one object per line (time, level, logger, message, and queue, "
                   "consumer, message_id, attempts on lines about a message).")
@click.option("--status-interval", default="60s", show_default=True, metavar="DURATION",
              help="Off a terminal, log a status line this often; on one, a live view "
                   "refreshed every second. 0 turns both off.")
@click.pass_context
def run(ctx: click.Context, path: str, processes: int, max_messages_per_process: int | None,
        max_memory_per_process: int | None, reload: bool, log_format: str,
        status_interval: str) -> None:
    """Boot the app and run until SIGINT/SIGTERM; a second signal exits at once."""
    configure(ctx.parent.params["log_level"] if ctx.parent else "INFO", log_format)
    try:
        interval_s = parse_duration_s(status_interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--status-interval") from exc
    app = load_or_exit(path)
    if processes > 1 or max_messages_per_process or max_memory_per_process:
        try:
            check_shareable(app.registry, processes)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
        limits = Limits(max_messages_per_process, max_memory_per_process)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        sys.exit(run_parent(path, app.registry, processes, limits=limits, reload=reload,
                            log_level=level, log_format=log_format,
                            status_interval_s=interval_s))
    try:
        _status.update(interval_s=interval_s, title=f"relevo run {path}")
        asyncio.run(_run(app, reload=True) if reload else _run(app))
    except StopTimeout as exc:
        click.echo(f"stopped with handlers still running: {exc}", err=True)
        sys.exit(1)
    except RelevoError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


_status: dict[str, Any] = {"interval_s": 0.0, "title": "relevo"}
"""The live status `run` asked for (kept apart so `_run(app)` stays the one seam)."""


async def _run(app: App, *, reload: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            os._exit(128 + signum)  # second signal: no more waiting
        logging.getLogger("relevo").info("%s: stopping gracefully", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    async with app:
        logging.getLogger("relevo").info("running; press Ctrl-C to stop")
        if reload and app.path is not None:
            from relevo.reload.watch import watch_config

            watching = loop.create_task(
                watch_config(app.path, lambda: app.registry, lambda: _reload(app), stop)
            )
        from relevo.status.report import report  # rich's live view, for `run` only

        status = asyncio.create_task(report(app, _status["interval_s"], _status["title"]))
        try:
            await stop.wait()
        finally:
            status.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status
        if reload:
            await watching
    logging.getLogger("relevo").info("stopped")


async def _reload(app: App) -> None:
    log = logging.getLogger("relevo.reload")
    try:
        result = await app.reload()
    except ConfigError as exc:
        log.error("reload refused, the app carries on unchanged:\n%s", exc)
    except Exception as exc:  # the watcher must outlive a failed reload
        log.error("reload failed: %r", exc)
    else:
        log.info("reloaded: added %s, removed %s, restarted %s",
                 result["added"], result["removed"], result["restarted"])


@main.command()
@click.argument("path", type=click.Path())
@click.option("--listen", default="127.0.0.1:8000", show_default=True, metavar="HOST:PORT")
@click.option("--read-only", is_flag=True, help="Show everything, refuse every action.")
def dashboard(path: str, listen: str, read_only: bool) -> None:
    """Serve the web dashboard of an application's queues (RELEVO_DASHBOARD_TOKEN guards it)."""
    try:
        from relevo.dashboard.serve import parse_listen, serve
    except ImportError as exc:
        click.echo(f"the dashboard needs its extra: pip install 'relevo[dashboard]' ({exc})",
                   err=True)
        sys.exit(1)
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    run_or_exit(serve(load_or_exit(path), host, port, read_only))


for _command in QUEUE_COMMANDS:
    main.add_command(_command)
