"""The states an entry moves through, as `App.status()` reports them."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    UNKNOWN = "unknown"  # never started
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # start failed, stop timed out, or it crashed and restarts ran out
    EXITED = "exited"  # ended on its own without an error
