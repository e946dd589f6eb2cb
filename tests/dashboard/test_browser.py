"""The dashboard in a real headless Chromium, driven by Playwright: what a person sees.

Debian's `chromium` (/usr/bin/chromium) is used, never a browser Playwright downloads.
Without it the test skips locally and fails under CI (.ci/run installs it). The
screenshots are taken on every run; with RELEVO_SCREENSHOTS=1 they are saved into
docs/images/, where docs/dashboard.md shows them (otherwise into the test's temporary
folder, so a test run leaves the working tree clean).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import relevo
from relevo.dashboard import create_app
from tests.dashboard import handlers
from tests.dashboard.apps import shop
from tests.dashboard.served import Served

CHROMIUM = "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.slow


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it (see .ci/run)")
    pytest.skip(message)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a new, empty user data dir
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            context.close()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.delenv("RELEVO_DASHBOARD_TOKEN", raising=False)
    handlers.reset()
    app = relevo.load(shop(tmp_path / "app"))
    with Served(app, create_app(app, sample_s=0.5)) as server:
        yield server


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return IMAGES if os.environ.get("RELEVO_SCREENSHOTS") == "1" else tmp_path


def shot(page: Any, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)
    assert (folder / name).stat().st_size > 10_000  # a real picture, not a blank page


def wait_for(predicate: Any, what: str, timeout_s: float = 15) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_person_sees_counts_live_opens_a_dead_letter_and_requeues_it(
    served: Served, browser_page: Any, images: Path
) -> None:
    from playwright.sync_api import expect

    page, app = browser_page, served.app
    page.goto(served.url + "/")
    expect(page.locator("h1")).to_have_text("Queues")
    page.evaluate("window.sameDocument = true")  # gone if the page ever reloads

    ids = served.call(app.publish_batch, "shop:emails", [{"to": f"u{n}@example.com"}
                                                           for n in range(7)])
    emails_ready = page.locator('[data-queue="shop:emails"][data-field="ready"]')
    expect(emails_ready).to_have_text("7")

    served.call(app.start, "shop:order_worker")
    for n in range(3):
        served.call(app.publish, "shop:orders", {"n": n, "fail": True, "items": ["tea", "cake"]},
                    {"customer": f"c-{n}"})
    dead_ready = page.locator('[data-queue="shop:orders_dead"][data-field="ready"]')
    expect(dead_ready).to_have_text("3")
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    worker_status = page.locator("tr", has_text="shop:order_worker").locator(".status")
    expect(worker_status).to_have_text("running")
    shot(page, images, "overview.png")

    page.get_by_role("link", name="shop:orders_dead").click()
    expect(page.locator("h1")).to_contain_text("Dead letters")
    letters = page.locator("details.dead-letter")
    expect(letters).to_have_count(3)
    first = letters.first
    message_id = first.get_attribute("data-id")
    first.locator("summary code").click()
    expect(first.locator("pre.reason-full")).to_contain_text("order 0 has no customer")
    expect(first.locator(".kv")).to_contain_text("c-0")
    shot(page, images, "dead-letters.png")

    handlers.state.fixed = True  # the bug is fixed: send the message back
    first.get_by_role("button", name="Requeue this message").click()
    expect(page.locator(".flash.ok")).to_have_text("requeued 1 message")
    wait_for(lambda: message_id in handlers.state.handled, "the requeued message handled")
    expect(page.locator("details.dead-letter")).to_have_count(2)
    expect(page.locator('[data-queue="shop:orders_dead"][data-field="ready"]')).to_have_text("2")

    page.goto(served.url + "/queues/shop:emails")
    expect(page.locator("details.message")).to_have_count(7)
    page.locator("details.message summary").first.click()
    expect(page.locator("details.message pre").first).to_contain_text("u0@example.com")
    assert page.locator("details.message code").first.inner_text() == ids[0]
    shot(page, images, "queue.png")

    page.goto(served.url + "/consumers")
    expect(page.locator('[data-consumer="shop:order_worker"]')).to_have_text("0")
    shot(page, images, "consumers.png")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".flash.ok")).to_contain_text("stop done")
    expect(page.locator("tr", has_text="shop:order_worker").locator(".status")).to_have_text(
        "stopped"
    )

    async def reminders() -> None:
        await app.publish_batch("shop:emails", [{"remind": n} for n in range(4)], delay="10m")
        await app.publish("shop:emails", {"remind": "soon"}, delay=300)

    served.call(reminders)
    page.goto(served.url + "/delayed")
    expect(page.locator('[data-queue="shop:emails"][data-field="delayed"]')).to_have_text("5")
    expect(page.locator("tr", has_text="shop:emails")).to_contain_text("(in 5 min)")
    shot(page, images, "delayed.png")


def test_a_hostile_body_runs_no_script_in_the_browser(
    served: Served, browser_page: Any
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    hostile = "<img src=x onerror=alert('body')><script>alert('script')</script>"
    served.call(served.app.publish, "shop:emails", {"html": hostile}, {"h": hostile})
    page.goto(served.url + "/queues/shop:emails")
    page.locator("details.message summary").first.click()
    expect(page.locator("details.message pre").first).to_contain_text("onerror=alert")
    page.goto(served.url + "/")
    expect(page.locator('[data-queue="shop:emails"][data-field="ready"]')).to_have_text("1")
    assert dialogs == []
