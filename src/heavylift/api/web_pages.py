"""The web pages the api function serves: the upload page and /admin/queues (server-rendered
HTML from templates in heavylift/api/web, plus its CSS and JavaScript)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from flask import Request, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from heavylift.api.auth import (
    KEY_PARAM,
    presented_key,
    principal_of_key,
    remember_key,
    require_api_key,
)
from heavylift.api.csrf import csrf_token
from heavylift.api.errors import ApiError
from heavylift.api.queue_admin import overview_of
from heavylift.api.services import Services
from heavylift.schemas import JOB_STATES
from heavylift.tenancy import Principal

_templates = Environment(
    loader=PackageLoader("heavylift.api", "web"), autoescape=select_autoescape(["html"])
)
_ASSETS = {"app.css": "text/css", "admin.js": "text/javascript", "upload.js": "text/javascript"}


def page_policy(svc: Services) -> str:
    """The pages' Content-Security-Policy: only our own files run or style them, nothing frames
    them, and Chromium refuses HTML from strings (Trusted Types, no policy may be made).
    connect-src adds the origin signed upload URLs point at: upload.js PUTs files there."""
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'",
        f"connect-src 'self' {svc.store.upload_origin}",
        "form-action 'self'", "base-uri 'none'", "object-src 'none'", "frame-ancestors 'none'",
        "require-trusted-types-for 'script'", "trusted-types 'none'",
    ])


def _html(svc: Services, body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/html",
                    headers={"Cache-Control": "no-store",
                             "Content-Security-Policy": page_policy(svc)})


def _page(request: Request, svc: Services, render: Callable[[Principal, str], str]) -> Response:
    """Protected like the API (any role may open a page; what it may do there is checked by the
    routes it calls). A valid `?key=` is moved into a cookie (and out of the URL, history and
    Referer); without a valid key the page asks for one. `render` gets the caller and the
    page's CSRF token, which its scripts send with every write."""
    key = request.args.get(KEY_PARAM)
    settings = svc.settings
    if key is not None and not settings.auth_disabled and principal_of_key(key, settings):
        rest = {name: value for name, value in request.args.items() if name != KEY_PARAM}
        location = request.path + (f"?{urlencode(rest)}" if rest else "")
        response = Response(status=303, headers={"Location": location})
        remember_key(response, request, key)
        return response
    try:
        principal = require_api_key(request.headers, request.args, request.cookies, settings,
                                    allow_query=True)
    except ApiError as error:
        login = _templates.get_template("login.html")
        return _html(svc, login.render(error=error.message, path=request.path), error.status)
    key = presented_key(request.headers, request.args, request.cookies, allow_query=True)
    return _html(svc, render(principal, csrf_token(key) if key else ""))


def _size(count: int) -> str:
    return f"{count / (1024 * 1024):g} MB"


def upload_page(request: Request, svc: Services) -> Response:
    """GET / and /upload."""
    settings = svc.settings

    def render(principal: Principal, csrf: str) -> str:
        return _templates.get_template("upload.html").render(
            page="upload", csrf_token=csrf,
            signed_threshold=settings.upload_page_signed_threshold_bytes,
            threshold_label=_size(settings.upload_page_signed_threshold_bytes),
            max_files=settings.max_files_per_request,
            max_bytes=settings.max_upload_bytes,
            max_bytes_label=_size(settings.max_upload_bytes),
        )

    return _page(request, svc, render)


def admin_page(request: Request, svc: Services) -> Response:
    """GET /admin/queues: counts rendered here; the script keeps them live. A non-admin key
    gets it read-only (the script hides the actions by `role`; the routes refuse them anyway)."""

    def render(principal: Principal, csrf: str) -> str:
        overview: dict[str, Any] = svc.queues.run(overview_of).model_dump()
        return _templates.get_template("admin.html").render(
            page="admin", csrf_token=csrf, overview=overview, states=JOB_STATES,
            role=principal.role
        )

    return _page(request, svc, render)


def asset(request: Request, svc: Services, name: str) -> Response:
    """GET /web/<name>: the pages' CSS and JavaScript (public: no secrets in them)."""
    if name not in _ASSETS:
        raise ApiError(404, "not_found", f"no asset {name}")
    body = files("heavylift.api").joinpath("web", name).read_bytes()
    return Response(body, mimetype=_ASSETS[name], headers={"Cache-Control": "public, max-age=300"})
