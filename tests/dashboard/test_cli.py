"""`relevo dashboard PATH` as a user runs it: a real server on the address asked for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.dashboard.apps import shop
from tests.dashboard.served import free_port

ROOT = Path(__file__).resolve().parents[2]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_relevo_dashboard_serves_the_pages_and_needs_the_token_from_the_environment(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**os.environ, "RELEVO_DASHBOARD_TOKEN": "t0ken"}
    process = subprocess.Popen(
        [sys.executable, "-m", "relevo", "dashboard", str(shop(tmp_path)),
         "--listen", f"127.0.0.1:{port}", "--read-only"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _ = get(base + "/api/queues", "t0ken")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.1)
        assert status == 200
        status, page = get(base + "/dead-letters/shop:orders_dead", "t0ken")
        assert status == 200
        assert "read-only" in page
        status, page = get(base + "/consumers")  # no token: the login form
        assert status == 200
        assert "This dashboard needs the token" in page
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=15)[0]
    assert "dashboard on http://127.0.0.1" in output
    assert "token required, read-only" in output


def test_a_bad_listen_address_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relevo", "dashboard", "app.yaml", "--listen", "nowhere"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr
