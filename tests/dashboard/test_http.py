"""Every dashboard route over HTTP (Starlette's TestClient), on a memory-driver application."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import relevo
from relevo.app import App
from relevo.dashboard import create_app
from relevo.message import Envelope
from tests.dashboard import handlers
from tests.dashboard.apps import HOSTILE, shop
from tests.waiting import wait_until_async


@dataclass
class Board:
    app: App
    client: TestClient

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        portal = self.client.portal
        assert portal is not None
        return portal.call(fn, *args)

    def csrf(self) -> str:
        self.client.get("/")
        value = self.client.cookies.get("relevo_csrf")
        assert value
        return value

    def dead_letters(self, count: int) -> list[str]:
        """`count` orders that fail twice and land in shop:orders_dead; their IDs."""
        async def fill() -> list[str]:
            await self.app.start("shop:order_worker")
            ids = [await self.app.publish("shop:orders", {"n": n, "fail": True, "note": HOSTILE},
                                          headers={"customer": HOSTILE}) for n in range(count)]
            return ids

        ids: list[str] = self.call(fill)
        self.wait_ready("shop:orders_dead", count)
        return ids

    def wait_ready(self, queue_id: str, count: int) -> None:
        async def check() -> None:
            async def holds() -> bool:
                return (await self.app.info(queue_id))["ready"] == count

            await wait_until_async(holds, 10, f"{queue_id} to hold {count} ready")

        self.call(check)

    def info(self, queue_id: str) -> dict[str, int]:
        result: dict[str, int] = self.call(self.app.info, queue_id)
        return result


@pytest.fixture
def make_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Board]]:
    monkeypatch.delenv("RELEVO_DASHBOARD_TOKEN", raising=False)
    handlers.reset()
    clients: list[TestClient] = []

    def make(**options: Any) -> Board:
        app = relevo.load(shop(tmp_path))
        client = TestClient(create_app(app, **options), base_url="http://127.0.0.1:8000")
        client.__enter__()
        clients.append(client)
        return Board(app, client)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def board(make_board: Callable[..., Board]) -> Board:
    return make_board()


def cells(html: str, queue_id: str) -> dict[str, str]:
    pattern = rf'data-queue="{re.escape(queue_id)}" data-field="(\w+)">([^<]*)<'
    return dict(re.findall(pattern, html))


# -- pages ---------------------------------------------------------------------------------


def test_the_overview_lists_every_entry_with_its_status_and_every_queue_with_counts(
    board: Board,
) -> None:
    board.call(board.app.publish_batch, "shop:emails", [{"to": n} for n in range(3)])
    page = board.client.get("/")
    assert page.status_code == 200
    for entry in ("shop:mem", "shop:orders", "shop:handle", "shop:order_worker"):
        assert entry in page.text
    assert cells(page.text, "shop:emails") == {"ready": "3", "in_flight": "0", "delayed": "0"}
    assert 'class="status s-unknown"' in page.text  # the consumer was never started
    assert "not started</span>" in page.text


def test_a_queue_page_pages_through_its_messages_never_loading_more_than_a_page(
    board: Board,
) -> None:
    ids = board.call(board.app.publish_batch, "shop:emails", [{"n": n} for n in range(120)])
    first = board.client.get("/queues/shop:emails", params={"limit": 50})
    assert first.status_code == 200
    shown = re.findall(r"<summary><code>([^<]+)</code>", first.text)
    assert shown == ids[:50]
    next_link = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert next_link is not None
    second = board.client.get(next_link.group(1).replace("&amp;", "&"))
    assert re.findall(r"<summary><code>([^<]+)</code>", second.text) == ids[50:100]
    assert "Page 2" in second.text
    third = board.client.get(
        "/queues/shop:emails", params={"limit": 50, "after": ids[99], "page": 3}
    )
    assert re.findall(r"<summary><code>([^<]+)</code>", third.text) == ids[100:]
    assert 'rel="next"' not in third.text
    assert board.client.get("/queues/shop:emails", params={"limit": "x"}).status_code == 400


def test_the_live_part_of_a_page_is_fetched_without_the_message_list(board: Board) -> None:
    board.call(board.app.publish, "shop:emails", {"n": 1})
    live = board.client.get("/queues/shop:emails", params={"partial": 1})
    assert live.status_code == 200
    assert 'id="queue-live"' in live.text
    assert "<details" not in live.text
    assert cells(live.text, "shop:emails")["ready"] == "1"


def test_the_dead_letter_page_shows_reason_time_attempts_body_and_headers(
    board: Board,
) -> None:
    ids = board.dead_letters(2)
    page = board.client.get("/dead-letters/shop:orders_dead")
    assert page.status_code == 200
    for message_id in ids:
        assert f'data-id="{message_id}"' in page.text
    assert "ValueError: order 0 has no customer" in page.text
    assert "2 attempts" in page.text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\)", page.text)
    assert "x_original_queue" in page.text
    assert "&#34;n&#34;: 0" in page.text or '"n": 0' in page.text
    index = board.client.get("/dead-letters")
    assert "shop:orders_dead" in index.text
    assert cells(index.text, "shop:orders_dead")["ready"] == "2"


def test_hostile_bodies_headers_and_queue_names_are_escaped_never_run(board: Board) -> None:
    board.dead_letters(1)
    board.call(board.app.publish, "shop:emails", {"html": HOSTILE}, {"evil": HOSTILE})
    for path in ("/", "/queues/shop:emails", "/dead-letters/shop:orders_dead",
                 "/queues/%3Cscript%3Ealert(1)%3C%2Fscript%3E"):
        page = board.client.get(path)
        assert "<script>alert" not in page.text, path
        assert re.findall(r"<script[^>]*>", page.text) == [
            '<script src="/static/htmx.min.js" defer>'
        ], path
    assert "&lt;script&gt;alert(" in board.client.get("/queues/shop:emails").text


def test_every_answer_carries_a_content_security_policy_without_inline_script(
    board: Board,
) -> None:
    for path in ("/", "/queues/shop:orders", "/dead-letters", "/delayed", "/consumers",
                 "/login", "/queues/missing", "/static/dashboard.css", "/api/queues"):
        policy = board.client.get(path).headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy


def test_an_unknown_queue_is_a_404_page(board: Board) -> None:
    for path in ("/queues/shop:nope", "/dead-letters/shop:nope"):
        page = board.client.get(path)
        assert page.status_code == 404
        assert "there is no queue &#39;shop:nope&#39;" in page.text
    csrf = board.csrf()
    gone = board.client.post("/queues/shop:nope/purge", data={"csrf": csrf, "confirm": "yes"})
    assert gone.status_code == 404


def test_the_delayed_page_lists_every_queue_with_its_delayed_count(board: Board) -> None:
    page = board.client.get("/delayed")
    assert page.status_code == 200
    for queue_id in ("shop:orders", "shop:orders_dead", "shop:emails"):
        assert cells(page.text, queue_id) == {"delayed": "0"}


def test_the_api_answers_json_counts(board: Board) -> None:
    board.call(board.app.publish, "shop:emails", {"n": 1})
    rows = {row["id"]: row for row in board.client.get("/api/queues").json()}
    assert rows["shop:emails"]["ready"] == 1
    assert rows["shop:emails"]["delayed"] == 0


def test_static_files_are_served(board: Board) -> None:
    assert board.client.get("/static/htmx.min.js").status_code == 200
    assert "--accent" in board.client.get("/static/dashboard.css").text


# -- actions ---------------------------------------------------------------------------------


def test_requeue_one_message_sends_it_home_with_attempt_one(board: Board) -> None:
    ids = board.dead_letters(3)
    handlers.state.fixed = True
    answer = board.client.post(
        "/dead-letters/shop:orders_dead/requeue", data={"csrf": board.csrf(), "id": ids[1]},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dead-letters/shop:orders_dead?notice=requeued+1+message"
    board.wait_ready("shop:orders_dead", 2)
    assert "requeued 1 message" in board.client.get(answer.headers["location"]).text


def test_requeue_a_selection_and_then_all(board: Board) -> None:
    ids = board.dead_letters(4)
    csrf = board.csrf()
    board.call(board.app.stop, "shop:order_worker")
    board.client.post("/dead-letters/shop:orders_dead/requeue",
                      data={"csrf": csrf, "id": [ids[0], ids[2]]})
    board.wait_ready("shop:orders_dead", 2)
    assert board.info("shop:orders")["ready"] == 2
    page = board.client.post("/dead-letters/shop:orders_dead/requeue",
                             data={"csrf": csrf, "all": "1"})
    assert "requeued 2 messages" in page.text
    assert board.info("shop:orders")["ready"] == 4
    nothing = board.client.post("/dead-letters/shop:orders_dead/requeue", data={"csrf": csrf})
    assert "nothing was selected" in nothing.text


def test_a_dead_letter_whose_queue_is_gone_is_kept_and_the_reason_shown(board: Board) -> None:
    async def orphan() -> None:
        await board.app.peek("shop:orders_dead")
        await board.app.queues["shop:orders_dead"].forward(
            [Envelope("lost-1", b"{}", {"x_original_queue": "shop:gone"}, 1)]
        )

    board.call(orphan)
    page = board.client.post("/dead-letters/shop:orders_dead/requeue",
                             data={"csrf": board.csrf(), "all": "1"})
    assert "requeued 0 messages" in page.text
    assert "kept 1: lost-1: its original queue &#39;shop:gone&#39; no longer exists" in page.text
    assert board.info("shop:orders_dead")["ready"] == 1


def test_purge_needs_the_confirmation_box_then_empties_the_queue(board: Board) -> None:
    board.call(board.app.publish_batch, "shop:emails", [{"n": n} for n in range(5)])
    csrf = board.csrf()
    unconfirmed = board.client.post("/queues/shop:emails/purge", data={"csrf": csrf})
    assert "tick the box" in unconfirmed.text
    assert board.info("shop:emails")["ready"] == 5
    done = board.client.post("/queues/shop:emails/purge", data={"csrf": csrf, "confirm": "yes"})
    assert "purged 5 messages" in done.text
    assert board.info("shop:emails")["ready"] == 0


def test_consumers_are_listed_and_started_and_stopped(board: Board) -> None:
    csrf = board.csrf()
    page = board.client.get("/consumers")
    assert "shop:order_worker" in page.text
    assert 'action="/consumers/shop:order_worker/start"' in page.text
    started = board.client.post("/consumers/shop:order_worker/start", data={"csrf": csrf})
    assert board.app.status("shop:order_worker") == "running"
    assert 'class="status s-running"' in started.text
    assert 'data-consumer="shop:order_worker" data-field="in_flight">0<' in started.text
    board.client.post("/consumers/shop:order_worker/stop", data={"csrf": csrf})
    assert board.app.status("shop:order_worker") == "stopped"
    assert board.client.post("/consumers/shop:orders/stop", data={"csrf": csrf}).status_code == 404
    assert board.client.post(
        "/consumers/shop:order_worker/explode", data={"csrf": csrf}
    ).status_code == 404


# -- refusals: nothing changes -----------------------------------------------------------------


def test_an_action_without_the_csrf_value_is_refused_and_changes_nothing(board: Board) -> None:
    board.dead_letters(1)
    board.call(board.app.stop, "shop:order_worker")
    board.csrf()  # the browser has the cookie, the attacker's form lacks the field
    for data in ({"all": "1"}, {"all": "1", "csrf": "forged"}):
        answer = board.client.post("/dead-letters/shop:orders_dead/requeue", data=data)
        assert answer.status_code == 403
    assert board.client.post(
        "/queues/shop:orders_dead/purge", data={"confirm": "yes"}
    ).status_code == 403
    assert board.client.post("/consumers/shop:order_worker/start", data={}).status_code == 403
    assert board.info("shop:orders_dead")["ready"] == 1
    assert board.app.status("shop:order_worker") == "stopped"


def test_a_request_from_another_origin_is_refused_even_with_the_csrf_value(
    board: Board,
) -> None:
    board.dead_letters(1)
    answer = board.client.post(
        "/queues/shop:orders_dead/purge", data={"csrf": board.csrf(), "confirm": "yes"},
        headers={"Origin": "http://evil.example"},
    )
    assert answer.status_code == 403
    assert board.info("shop:orders_dead")["ready"] == 1


def test_read_only_refuses_every_action_and_shows_no_buttons(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(read_only=True)
    board.dead_letters(1)
    csrf = board.csrf()
    page = board.client.get("/dead-letters/shop:orders_dead")
    assert "read-only" in page.text
    assert "<button" not in page.text
    for path, data in (("/dead-letters/shop:orders_dead/requeue", {"all": "1"}),
                       ("/queues/shop:orders_dead/purge", {"confirm": "yes"}),
                       ("/consumers/shop:order_worker/stop", {})):
        answer = board.client.post(path, data={"csrf": csrf, **data})
        assert answer.status_code == 403, path
        assert "read-only" in answer.text
    assert board.info("shop:orders_dead")["ready"] == 1
    assert board.app.status("shop:order_worker") == "running"


# -- the token ---------------------------------------------------------------------------------


def test_with_a_token_pages_ask_for_a_login_and_the_api_for_a_bearer(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(token="s3cret")
    client = board.client
    page = client.get("/queues/shop:emails", headers={"accept": "text/html"},
                      follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/queues/shop%3Aemails"
    assert client.get("/api/queues").status_code == 401
    assert client.get("/api/queues", headers={"authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/queues", headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/static/dashboard.css").status_code == 200


def test_the_login_form_sets_a_cookie_that_opens_every_page(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(token="s3cret")
    client = board.client
    form = client.get("/login")
    assert form.status_code == 200
    csrf = client.cookies.get("relevo_csrf")
    wrong = client.post("/login", data={"csrf": csrf, "token": "guess"})
    assert wrong.status_code == 403
    assert "not the right one" in wrong.text
    assert client.post("/login", data={"token": "s3cret"}).status_code == 403  # no CSRF
    right = client.post("/login?next=/consumers", data={"csrf": csrf, "token": "s3cret"},
                        follow_redirects=False)
    assert (right.status_code, right.headers["location"]) == (303, "/consumers")
    session = client.cookies.get("relevo_session")
    assert session
    assert "s3cret" not in session
    assert client.get("/consumers").status_code == 200


def test_login_never_redirects_to_another_site(make_board: Callable[..., Board]) -> None:
    board = make_board(token="s3cret")
    client = board.client
    client.get("/login")
    csrf = client.cookies.get("relevo_csrf")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = client.post("/login", params={"next": target},
                             data={"csrf": csrf, "token": "s3cret"}, follow_redirects=False)
        assert answer.headers["location"] == "/", target


def test_with_a_token_an_action_needs_it_and_a_bearer_client_needs_no_csrf(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(token="s3cret")
    board.dead_letters(1)
    board.call(board.app.stop, "shop:order_worker")
    refused = board.client.post("/queues/shop:orders_dead/purge", data={"confirm": "yes"})
    assert refused.status_code == 403
    wrong = board.client.post(
        "/queues/shop:orders_dead/purge", data={"confirm": "yes"},
        headers={"authorization": "Bearer guess"},
    )
    assert wrong.status_code == 403
    assert board.info("shop:orders_dead")["ready"] == 1
    done = board.client.post(
        "/queues/shop:orders_dead/purge", data={"confirm": "yes"},
        headers={"authorization": "Bearer s3cret"}, follow_redirects=False,
    )
    assert done.status_code == 303
    assert board.info("shop:orders_dead")["ready"] == 0


def test_the_token_comes_from_the_environment_by_default(
    make_board: Callable[..., Board], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEVO_DASHBOARD_TOKEN", "from-env")
    board = make_board()
    assert board.client.get("/api/queues").status_code == 401
    assert board.client.get(
        "/api/queues", headers={"authorization": "Bearer from-env"}
    ).status_code == 200


def test_a_live_queue_on_a_driver_whose_peek_counts_attempts_is_peeked_only_on_request(
    board: Board,
) -> None:
    """AMQP gives peeked messages back marked redelivered, which its consumers count as an
    attempt: the queue page must not do that to a live queue on every visit."""
    driver = board.app.queues["shop:emails"].driver
    driver.capabilities = dataclasses.replace(driver.capabilities, quiet_peek=False)
    board.call(board.app.publish, "shop:emails", {"n": 1})
    board.dead_letters(1)
    page = board.client.get("/queues/shop:emails")
    assert "Peek anyway" in page.text
    assert "<details" not in page.text
    asked = board.client.get("/queues/shop:emails", params={"peek": 1})
    assert "Peek anyway" not in asked.text
    assert asked.text.count('<details class="message">') == 1
    dead = board.client.get("/queues/shop:orders_dead")  # nobody consumes dead letters
    assert "Peek anyway" not in dead.text
    assert "<details" in dead.text


def test_behind_a_proxy_that_ends_tls_the_same_site_is_still_recognised(board: Board) -> None:
    board.call(board.app.publish, "shop:emails", {"n": 1})
    csrf = board.csrf()
    through_proxy = board.client.post(
        "/queues/shop:emails/purge", data={"csrf": csrf, "confirm": "yes"},
        headers={"Origin": "https://relevo.example", "X-Forwarded-Host": "relevo.example"},
    )
    assert "purged 1 message<" in through_proxy.text
    assert board.client.post(
        "/queues/shop:emails/purge", data={"csrf": csrf, "confirm": "yes"},
        headers={"Origin": "https://evil.example", "X-Forwarded-Host": "relevo.example"},
    ).status_code == 403
