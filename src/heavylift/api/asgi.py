"""The `api` function's front door, on the server's event loop (functions-framework's ASGI
stack: Starlette under uvicorn). Everything that can wait on a client happens here and holds no
thread: refusing oversized URLs and bodies, resolving the key to its principal (tenant, role)
and refusing a role too low before the body is read, reading the body, and Server-Sent Event
streams. Only a request that is complete and allowed takes a
request thread, for its handler (`app.dispatch`)."""

from __future__ import annotations

from typing import Any, cast

from a2wsgi.asgi_typing import HTTPScope
from a2wsgi.wsgi import build_environ
from flask import Response as FlaskResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from werkzeug.routing import MapAdapter

from heavylift.api.app import (
    MULTIPART,
    ROUTES,
    STREAMS,
    URLS,
    Access,
    dispatch,
    log_request,
    secure_headers,
)
from heavylift.api.auth import PRINCIPAL_KEY, require_api_key, require_role
from heavylift.api.body import read_body
from heavylift.api.csrf import check_write
from heavylift.api.documents import admit_local_put
from heavylift.api.errors import ApiError, error_response
from heavylift.api.services import Services, services
from heavylift.tenancy import Principal, Role

_ROUTER: MapAdapter = URLS.bind("localhost")


async def serve(request: Request) -> Response:
    svc = services()
    try:
        response = await _serve(request, svc)
    except ClientDisconnect:
        response = Response(status_code=400)  # nobody is listening; nothing was accepted
    except Exception as error:
        response = _from_flask(error_response(error))
    secure_headers(response.headers)
    log_request(request.method, request.url.path, response.status_code)
    return response


async def _serve(request: Request, svc: Services) -> Response:
    _limit_url(request, svc)
    endpoint, args = _ROUTER.match(request.url.path, method=request.method)
    if endpoint in STREAMS:
        stream, role = STREAMS[endpoint]
        caller = _require_key(request, svc, role, allow_query=True)
        response: Response = await stream(request, svc, principal=caller, **args)
        return response
    _, access, needs = ROUTES[endpoint]
    principal: Principal | None = None  # signed PUTs and pages have none here
    if access is Access.KEY:  # a key route without a role is the operator's (fail closed)
        principal = _require_key(request, svc, needs or "admin", allow_query=False)
        check_write(request, svc.settings, json_body=endpoint not in MULTIPART)
    elif access is Access.SIGNED:
        admit_local_put(request.headers, request.query_params, svc)
    body, size = await read_body(request, svc.settings.max_upload_bytes + 1024 * 1024,
                                 svc.settings.body_idle_timeout_s)
    with body:
        environ = _environ(request, body, size)
        environ[PRINCIPAL_KEY] = principal
        return await run_in_threadpool(_run_handler, environ, endpoint, dict(args), svc)


def _limit_url(request: Request, svc: Services) -> None:
    """A huge URL costs CPU in every later step (routing, query parsing): refuse it first."""
    scope = request.scope
    length = len(scope.get("raw_path") or scope["path"]) + 1 + len(scope["query_string"])
    limit = svc.settings.max_url_bytes
    if length > limit:
        raise ApiError(414, "uri_too_long", f"request URL is over {limit} bytes (MAX_URL_BYTES)")


def _require_key(request: Request, svc: Services, role: Role, allow_query: bool) -> Principal:
    """The key's principal, refused (403) before the body is read when its role is too low."""
    principal = require_api_key(request.headers, request.query_params, request.cookies,
                                svc.settings, allow_query=allow_query)
    require_role(principal, role)
    return principal


def _environ(request: Request, body: Any, size: int) -> dict[str, Any]:
    """The WSGI environ of a request whose body has been read: the body's real length, whether
    it came with a Content-Length or chunked."""
    environ = cast(dict[str, Any], build_environ(cast(HTTPScope, request.scope), body))
    environ["CONTENT_LENGTH"] = str(size)
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return environ


def _run_handler(environ: dict[str, Any], endpoint: str, args: dict[str, Any],
                 svc: Services) -> Response:
    # In the thread: a handler's response may still read storage while it is produced.
    return _from_flask(dispatch(environ, endpoint, args, svc))


def _from_flask(response: FlaskResponse) -> Response:
    out = Response(b"".join(response.iter_encoded()), status_code=response.status_code)
    out.raw_headers += [(name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in response.headers.items()
                        if name.lower() != "content-length"]
    return out
