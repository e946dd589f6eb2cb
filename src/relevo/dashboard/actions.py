"""The actions: requeue dead letters, purge a queue, start or stop a consumer.

Each is a POST checked by `Guard.action` (token, CSRF, read-only) before anything
changes, and answers with a redirect back to the page it came from (303, so a reload
does not repeat it), carrying what happened in `notice` or `problem`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from relevo.errors import RelevoError

if TYPE_CHECKING:
    from relevo.dashboard.web import Dashboard

_SHOWN_REASONS = 3


def routes(board: Dashboard) -> list[Route]:
    actions = Actions(board)
    return [
        Route("/dead-letters/{queue_id}/requeue", actions.requeue, methods=["POST"],
              name="requeue"),
        Route("/queues/{queue_id}/purge", actions.purge, methods=["POST"], name="purge"),
        Route("/consumers/{entry_id}/{verb:str}", actions.consumer, methods=["POST"],
              name="consumer_action"),
    ]


class Actions:
    """One handler per action; each passes `Guard.action` before it changes anything."""

    def __init__(self, board: Dashboard) -> None:
        self.board = board

    async def requeue(self, request: Request) -> Response:
        board = self.board
        form = await board.guard.action(request)
        queue_id = _queue_id(board, request)
        ids = [str(v) for v in form.getlist("id")]
        if not ids and form.get("all") != "1":
            return _back(request, "dead_letters", queue_id, problem="nothing was selected")
        try:
            after = str(form.get("after") or "") or None  # the page they were shown on
            report = await board.app.requeue_report(queue_id, ids or None, after=after)
        except RelevoError as exc:
            return _back(request, "dead_letters", queue_id, problem=f"requeue failed: {exc}")
        notice = f"requeued {report.moved:,} message{'s' if report.moved != 1 else ''}"
        problem = None
        if report.refused:
            reasons = [f"{i}: {r}" for i, r in list(report.refused.items())[:_SHOWN_REASONS]]
            more = len(report.refused) - len(reasons)
            problem = f"kept {len(report.refused):,}: " + "; ".join(reasons) + (
                f"; and {more:,} more" if more > 0 else ""
            )
        return _back(request, "dead_letters", queue_id, notice=notice, problem=problem)

    async def purge(self, request: Request) -> Response:
        board = self.board
        form = await board.guard.action(request)
        queue_id = _queue_id(board, request)
        back = "dead_letters" if form.get("back") == "dead_letters" else "queue"
        if form.get("confirm") != "yes":
            return _back(request, back, queue_id, problem="tick the box to confirm the purge")
        try:
            removed = await board.app.purge(queue_id)
        except RelevoError as exc:
            return _back(request, back, queue_id, problem=f"purge failed: {exc}")
        plural = "" if removed == 1 else "s"
        return _back(request, back, queue_id, notice=f"purged {removed:,} message{plural}")

    async def consumer(self, request: Request) -> Response:
        board = self.board
        await board.guard.action(request)
        entry_id = request.path_params["entry_id"]
        verb = request.path_params["verb"]
        if verb not in ("start", "stop") or not board.model.has_consumer(entry_id):
            raise HTTPException(404, f"there is no consumer {entry_id!r} in this application")
        try:
            if verb == "start":
                await board.app.start(entry_id)
            else:
                await board.app.stop(entry_id)
        except RelevoError as exc:
            return _redirect(request, "consumers", problem=f"{verb} {entry_id} failed: {exc}")
        return _redirect(request, "consumers", notice=f"{entry_id}: {verb} done")


def _queue_id(board: Dashboard, request: Request) -> str:
    queue_id: str = request.path_params["queue_id"]
    if not board.model.has_queue(queue_id):
        raise HTTPException(404, f"there is no queue {queue_id!r} in this application")
    return queue_id


def _back(request: Request, name: str, queue_id: str, **message: str | None) -> Response:
    path = request.url_for(name, queue_id=quote(queue_id, safe=":")).path
    return _to(path, message)


def _redirect(request: Request, name: str, **message: str | None) -> Response:
    return _to(request.url_for(name).path, message)


def _to(path: str, message: dict[str, str | None]) -> Response:
    query = urlencode({k: v for k, v in message.items() if v})
    return RedirectResponse(path + ("?" + query if query else ""), status_code=303)
