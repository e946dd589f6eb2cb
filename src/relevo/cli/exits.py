"""Errors a user can fix end a command with their message and exit status 1, no traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from relevo.app import App, load
from relevo.errors import ConfigError, RelevoError

T = TypeVar("T")


def load_or_exit(path: str) -> App:
    """The application at `path`; an invalid config is printed, every issue of it."""
    try:
        return load(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def run_or_exit(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`; a RelevoError is printed as `error: ...`."""
    try:
        return asyncio.run(coro)
    except RelevoError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
