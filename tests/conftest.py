"""Shared fixtures. Broker tests skip when their broker is down; under CI they fail."""

from __future__ import annotations

import os
import socket

import pytest


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally, fail under CI, when a broker the test needs does not answer."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must start it (see .ci/run)")
        pytest.skip(message)
