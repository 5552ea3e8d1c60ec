"""API keys: each resolves to a Principal (tenant, role, datasets: heavylift.tenancy) from
API_KEYS_JSON / API_KEYS_FILE or the legacy API_KEYS; AUTH_DISABLED (local only) is the operator.

A key comes as `Authorization: Bearer <key>`, or the `heavylift_key` cookie, or (only where a
browser cannot send headers: EventSource streams, page loads) a `key` query parameter. A page
opened with `?key=` sets that cookie (HttpOnly, SameSite=Strict: other sites' forms cannot ride
on it) and redirects to the same URL without the key.
"""

from __future__ import annotations

from typing import Protocol

from flask import Request, Response

from heavylift.api.errors import ApiError
from heavylift.settings import Settings
from heavylift.tenancy import OPERATOR, Principal, Role, principal_for


class Fields(Protocol):
    """Headers, query or cookies: werkzeug's and Starlette's kinds all fit."""

    def get(self, key: str, /) -> str | None: ...


KEY_COOKIE = "heavylift_key"
KEY_PARAM = "key"
# Where the front door leaves the request's principal for the handler (WSGI environ).
PRINCIPAL_KEY = "heavylift.principal"


def presented_key(headers: Fields, query: Fields,
                  cookies: Fields, allow_query: bool) -> str | None:
    """The key from the request's headers, query or cookies (either server's request objects
    have all three). `allow_query` only where a browser cannot send headers (EventSource): a key
    in a URL ends up in request logs."""
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    from_query = query.get(KEY_PARAM) if allow_query else None
    return from_query or cookies.get(KEY_COOKIE) or None


def principal_of_key(key: str, settings: Settings) -> Principal | None:
    return principal_for(key, settings.key_table)


def require_api_key(headers: Fields, query: Fields,
                    cookies: Fields, settings: Settings,
                    allow_query: bool = False) -> Principal:
    """The principal of the request's key; 401 without a known key."""
    if settings.auth_disabled:
        return OPERATOR
    key = presented_key(headers, query, cookies, allow_query)
    if key is None:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
    principal = principal_of_key(key, settings)
    if principal is None:
        raise ApiError(401, "unauthorized", "invalid API key")
    return principal


def require_role(principal: Principal, role: Role) -> None:
    if not principal.has(role):
        raise ApiError(403, "forbidden", f"this needs a key with role '{role}' (or above); "
                       f"this key's role is '{principal.role}'")


def principal_of(request: Request) -> Principal:
    """The principal the front door resolved for this request."""
    principal: Principal = request.environ[PRINCIPAL_KEY]
    return principal


def remember_key(response: Response, request: Request, key: str) -> None:
    """Keep the key in the browser for later page loads, fetches and EventSources."""
    https = request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="Strict", secure=https, path="/")
