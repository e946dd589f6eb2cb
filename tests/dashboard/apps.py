"""The application the dashboard tests look at: orders (with dead letters), emails, a consumer."""

from __future__ import annotations

from pathlib import Path

from tests.appfiles import write_app

HOSTILE = "<script>alert('pwned')</script>"

APP = f"""\
- name: mem
  kind: queue.driver.memory
- name: orders
  kind: queue.queue
  driver: mem
  dead_letter: {{queue: orders_dead, max_attempts: 2}}
- name: orders_dead
  kind: queue.queue
  driver: mem
- name: emails
  kind: queue.queue
  driver: mem
  queue_name: "{HOSTILE}"
- name: handle
  kind: function.python
  handler: "tests.dashboard.handlers:handle"
- name: order_worker
  kind: queue.consumer
  queue: orders
  func: handle
  concurrency: 2
"""


def shop(folder: Path) -> Path:
    return write_app(folder, APP, namespace="shop")
