"""The pages: overview, a queue, dead letters, delayed messages, consumers, login.

Every list of messages is one page of `peek` (at most `MAX_LIMIT`), never a whole
queue; the next page starts after the last ID shown.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from relevo.dashboard.chart import chart, sparkline
from relevo.dashboard.security import safe_next

if TYPE_CHECKING:
    from relevo.dashboard.model import QueueRow
    from relevo.dashboard.web import Dashboard

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def routes(board: Dashboard) -> list[Route]:
    pages = Pages(board)
    return [
        Route("/", pages.overview, name="overview"),
        Route("/queues/{queue_id}", pages.queue, name="queue"),
        Route("/dead-letters", pages.dead_letter_index, name="dead_letter_index"),
        Route("/dead-letters/{queue_id}", pages.dead_letters, name="dead_letters"),
        Route("/delayed", pages.delayed, name="delayed"),
        Route("/consumers", pages.consumers, name="consumers"),
        Route("/login", pages.login, methods=["GET", "POST"], name="login"),
        Route("/api/queues", pages.api_queues, name="api_queues"),
    ]


class Pages:
    """One handler per page; each reads what it shows through the dashboard's model."""

    def __init__(self, board: Dashboard) -> None:
        self.board = board

    async def overview(self, request: Request) -> Response:
        board = self.board
        queues = await board.model.queues()
        context = {"entries": board.model.entries(), "queues": queues,
                   "sparks": {q.id: sparkline(board.history.series(q.id)) for q in queues}}
        return _page(board, request, "overview.html", "overview", context)

    async def queue(self, request: Request) -> Response:
        board = self.board
        row = await _queue_row(board, request)
        limit, after = _paging(request)
        context: dict[str, Any] = {
            "queue": row, "chart": chart(board.history.series(row.id)),
        }
        # On a driver whose peek is not quiet (AMQP marks peeked messages redelivered,
        # which its consumers count as an attempt), a live queue is peeked only on request.
        ask = not row.quiet_peek and not row.is_dead_letter_queue and (
            request.query_params.get("peek") != "1"
        )
        if not _partial(request):
            context["messages"] = [] if ask else await _peek(board, row, limit, after)
            context.update(limit=limit, after=after, page_no=_page_no(request))
        context["ask_to_peek"] = ask
        return _page(board, request, "queue.html", "queue", context)

    async def dead_letter_index(self, request: Request) -> Response:
        rows = [q for q in await self.board.model.queues() if q.is_dead_letter_queue]
        return _page(self.board, request, "dead_letter_index.html", "dead_letters",
                     {"queues": rows})

    async def dead_letters(self, request: Request) -> Response:
        row = await _queue_row(self.board, request)
        limit, after = _paging(request)
        context: dict[str, Any] = {"queue": row}
        if not _partial(request):
            context["messages"] = await _peek(self.board, row, limit, after)
            context.update(limit=limit, after=after, page_no=_page_no(request))
        return _page(self.board, request, "dead_letters.html", "dead_letters", context)

    async def delayed(self, request: Request) -> Response:
        rows = await self.board.model.queues()
        return _page(self.board, request, "delayed.html", "delayed", {"queues": rows})

    async def consumers(self, request: Request) -> Response:
        return _page(self.board, request, "consumers.html", "consumers",
                     {"consumers": self.board.model.consumers()})

    async def login(self, request: Request) -> Response:
        board = self.board
        target = safe_next(request.query_params.get("next"))
        if request.method == "POST":
            form = await board.guard.login_form(request)
            if board.guard.token_matches(str(form.get("token", ""))):
                response = RedirectResponse(
                    request.scope.get("root_path", "") + target, status_code=303
                )
                board.guard.session_cookie(response)
                return response
            return board.render(request, "login.html", 403, next=target, nav="login",
                                failed=True)
        return board.render(request, "login.html", next=target, nav="login", failed=False)

    async def api_queues(self, request: Request) -> Response:
        rows = await self.board.model.queues()
        return JSONResponse([
            {"id": q.id, "error": q.error, **(q.stats.as_dict() if q.stats else {}),
             "next_due": q.stats.next_due if q.stats else None}
            for q in rows
        ])


def _page(board: Dashboard, request: Request, template: str, nav: str,
          context: dict[str, Any]) -> Response:
    """The whole page, or with `?partial=1` only its live part (what htmx re-fetches)."""
    return board.render(request, template, nav=nav, partial=_partial(request), **context)


def _partial(request: Request) -> bool:
    return request.query_params.get("partial") == "1"


async def _queue_row(board: Dashboard, request: Request) -> QueueRow:
    queue_id = request.path_params["queue_id"]
    if not board.model.has_queue(queue_id):
        raise HTTPException(404, f"there is no queue {queue_id!r} in this application")
    return await board.model.queue(queue_id)


def _paging(request: Request) -> tuple[int, str | None]:
    try:
        limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise HTTPException(400, "limit must be a whole number") from None
    return max(1, min(MAX_LIMIT, limit)), request.query_params.get("after") or None


def _page_no(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", 1)))
    except ValueError:
        return 1


async def _peek(board: Dashboard, row: QueueRow, limit: int, after: str | None
                ) -> list[dict[str, Any]]:
    if row.error is not None:
        return []
    messages = await board.app.peek(row.id, limit, after)
    for message in messages:
        message["pretty"] = json.dumps(message["body"], indent=2, ensure_ascii=False, default=str)
    return messages

