"""`create_app(app)`: the dashboard as an ASGI application (Starlette, Jinja2, htmx).

Pages are rendered on the server. Parts that change (counts, statuses) are re-fetched
by htmx every two seconds as HTML fragments (`?partial=1`), so the page updates without
a reload and without a script of our own; htmx is vendored as a static file.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from relevo.app import App
from relevo.dashboard import actions, pages
from relevo.dashboard.history import CountDeltaRates, History, RateSource
from relevo.dashboard.model import Model
from relevo.dashboard.security import Guard, GuardMiddleware

if TYPE_CHECKING:
    from relevo.dashboard.metrics_rates import MetricsRates

TOKEN_ENV = "RELEVO_DASHBOARD_TOKEN"
LIVE_EVERY_S = 2


class Dashboard:
    """What every route handler shares: the model, the guard, the templates."""

    def __init__(self, app: App, guard: Guard, history: History, rates: RateSource,
                 metrics: MetricsRates | None = None) -> None:
        self.app = app
        self.guard = guard
        self.history = history
        self.metrics = metrics
        self.model = Model(app, rates)
        folder = resources.files("relevo.dashboard").joinpath("templates")
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            autoescape=True,  # every value is escaped unless a template says otherwise
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(when=_when, number=_number, rate=_rate, per_s=_per_s)

    def render(self, request: Request, template: str, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        self.history.ensure_started()
        if self.metrics is not None:
            self.metrics.ensure_started()

        def url(name: str, query: dict[str, Any] | None = None, **params: str) -> str:
            quoted = {k: quote(v, safe=":") for k, v in params.items()}
            path = request.url_for(name, **quoted).path
            clean = {k: v for k, v in (query or {}).items() if v not in (None, "")}
            return path + ("?" + urlencode(clean, doseq=True) if clean else "")

        html = self.templates.get_template(template).render(
            request=request, url=url, csrf=request.state.csrf,
            read_only=self.guard.read_only, token_set=self.guard.token is not None,
            live_every=LIVE_EVERY_S, notice=request.query_params.get("notice"),
            problem=request.query_params.get("problem"), **context,
        )
        return HTMLResponse(html, status_code=status_code)


def create_app(
    app: App,
    *,
    read_only: bool = False,
    token: str | None = None,
    rates: RateSource | None = None,
    sample_s: float = 5.0,
) -> Starlette:
    """The dashboard of an `App`, as an ASGI application.

    Served on its own (its lifespan runs), it opens an app that is not open yet, starting
    no consumer, and closes it at shutdown. Mounted inside another application, open the
    app yourself (`async with app` or `await app.open(start=False)`).

    `token` defaults to the RELEVO_DASHBOARD_TOKEN environment variable. `rates` replaces
    the rates drawn from count deltas (e.g. by figures from a metrics endpoint).
    """
    guard = Guard(token if token is not None else os.environ.get(TOKEN_ENV), read_only)
    dashboard_ids = [e.id for e in app.registry.queues()]
    history = History(dashboard_ids, app.queue_stats, sample_s)
    metrics = _metrics_rates(app, history, sample_s) if rates is None else None
    board = Dashboard(app, guard, history, rates or metrics or CountDeltaRates(history), metrics)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        opened = not app.is_open
        if opened:  # served on its own: open the queues here, start no consumer
            await app.open(start=False)
        try:
            yield
        finally:
            await history.stop()
            if metrics is not None:
                await metrics.stop()
            if opened:
                await app.close()

    static = resources.files("relevo.dashboard").joinpath("static")
    routes = [*pages.routes(board), *actions.routes(board),
              Mount("/static", StaticFiles(directory=str(static)), name="static")]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return board.render(request, "error.html", exc.status_code,
                            status=exc.status_code, detail=exc.detail, nav="error")

    return Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, guard=guard)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )


def _metrics_rates(app: App, history: History, sample_s: float) -> MetricsRates | None:
    """Rates from the workers' metrics endpoint, when the application has one."""
    endpoint = metrics_url(app)
    if endpoint is None:
        return None
    from relevo.dashboard.metrics_rates import MetricsRates  # loads prometheus-client

    return MetricsRates(endpoint, CountDeltaRates(history), sample_s)


def metrics_url(app: App) -> str | None:
    """The /metrics URL of the application's first `metrics.prometheus` entry, if any."""
    for entry in app.registry.of_kind("metrics.prometheus"):
        host, _, port = entry.settings.listen.rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # listening everywhere: reachable here
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}/metrics"
    return None


def _when(epoch_or_text: float | str | None) -> str:
    """A time for people: UTC, and how long ago or ahead."""
    if epoch_or_text is None or epoch_or_text == "":
        return "—"
    try:
        if isinstance(epoch_or_text, str):
            moment = datetime.fromisoformat(epoch_or_text)
        else:
            moment = datetime.fromtimestamp(epoch_or_text, UTC)
    except ValueError:
        return str(epoch_or_text)
    delta = (moment - datetime.now(UTC)).total_seconds()
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({_span(delta)})"


def _span(seconds: float) -> str:
    ahead, seconds = seconds > 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f} {unit}"
            break
    else:
        text = f"{seconds:.0f} s"
    return f"in {text}" if ahead else f"{text} ago"


def _number(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _per_s(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}/s"


def _rate(value: float | None) -> str:
    if value is None:
        return "—"
    sign = "+" if value > 0.05 else ""
    return f"{sign}{value:,.1f}/s"


