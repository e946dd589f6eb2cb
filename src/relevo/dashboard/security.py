"""Who may see the dashboard and who may act on it.

- **Token.** With a token (`RELEVO_DASHBOARD_TOKEN`), every request needs it: browsers
  log in once through a form that sets a session cookie (an HMAC of the token, never
  the token itself); API clients send `Authorization: Bearer <token>`.
- **Cross-site requests.** Every POST carries a CSRF value that must equal the
  `relevo_csrf` cookie (double submit; the cookie is SameSite=Strict and HttpOnly), and
  an `Origin` header, when the browser sends one, must be this dashboard's. A request
  authenticated with the Bearer header needs no CSRF value: no browser adds that
  header to a cross-site request.
- **Read-only** refuses every action with 403.
- Every response carries a Content-Security-Policy that allows scripts and styles from
  the dashboard itself only: no inline script can run, even if escaping ever failed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote, urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

SESSION_COOKIE = "relevo_session"
CSRF_COOKIE = "relevo_csrf"
CSRF_FIELD = "csrf"
OPEN_PATHS = ("/login", "/static/")  # reachable without the token

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null`
    "Cache-Control": "no-store",
}


class Guard:
    def __init__(self, token: str | None, read_only: bool) -> None:
        self.token = token or None
        self.read_only = read_only
        self._session = (
            hmac.new(self.token.encode(), b"relevo-dashboard-session", hashlib.sha256).hexdigest()
            if self.token else None
        )

    # -- who is asking ------------------------------------------------------------------

    def bearer(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return (
            self.token is not None and scheme.lower() == "bearer"
            and hmac.compare_digest(value.strip().encode(), self.token.encode())
        )

    def authenticated(self, request: Request) -> bool:
        if self.token is None or self.bearer(request):
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        assert self._session is not None
        return hmac.compare_digest(cookie.encode(), self._session.encode())

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def session_cookie(self, response: Response) -> None:
        assert self._session is not None
        response.set_cookie(
            SESSION_COOKIE, self._session, httponly=True, samesite="strict", path="/"
        )

    # -- actions --------------------------------------------------------------------------

    async def action(self, request: Request) -> FormData:
        """The form of a POST that may change something, or 403 (nothing is changed)."""
        if self.read_only:
            raise HTTPException(403, "the dashboard is read-only")
        form = await request.form()
        if self.bearer(request):
            return form
        self._same_site(request, form)
        return form

    async def login_form(self, request: Request) -> FormData:
        """The login form: cross-site checked like an action, allowed when read-only."""
        form = await request.form()
        self._same_site(request, form)
        return form

    def _same_site(self, request: Request, form: FormData) -> None:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc not in _own_hosts(request):
            raise HTTPException(403, "cross-site request refused")
        given = form.get(CSRF_FIELD) or request.headers.get("x-csrf-token") or ""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (isinstance(given, str) and cookie
                and hmac.compare_digest(given.encode(), cookie.encode())):
            raise HTTPException(403, "missing or wrong CSRF value; reload the page")


class GuardMiddleware(BaseHTTPMiddleware):
    """Token check before every route; CSRF cookie and security headers on every answer."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        super().__init__(app)
        self.guard = guard

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE)
        fresh = csrf is None or len(csrf) < 32
        request.state.csrf = secrets.token_urlsafe(32) if fresh else csrf
        path = _relative_path(request)
        if not path.startswith(OPEN_PATHS) and not self.guard.authenticated(request):
            response = _login_required(request, path)
        else:
            response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict", path="/"
            )
        return response


def _login_required(request: Request, path: str) -> Response:
    wants_page = (
        request.method == "GET" and "text/html" in request.headers.get("accept", "")
        and "hx-request" not in request.headers
    )
    if wants_page:
        root = request.scope.get("root_path", "")
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{root}/login?next={quote(target)}", status_code=303)
    if request.method not in ("GET", "HEAD"):  # an action without the token: refused
        return PlainTextResponse("refused: the dashboard token is required", status_code=403)
    return PlainTextResponse(
        "authentication required", status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def _relative_path(request: Request) -> str:
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _own_hosts(request: Request) -> set[str]:
    """The names this dashboard answers to: its Host, and the X-Forwarded-Host a reverse
    proxy sets. The scheme is not compared: a proxy that ends TLS forwards plain HTTP."""
    hosts = {request.headers.get("host", request.url.netloc)}
    forwarded = request.headers.get("x-forwarded-host")
    if forwarded:
        hosts.add(forwarded.split(",")[0].strip())
    return hosts


def safe_next(target: str | None) -> str:
    """A redirect target after login: a path on this site, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
