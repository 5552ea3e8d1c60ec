"""API keys (keys from API_KEYS); AUTH_DISABLED: local only.

A key comes as `Authorization: Bearer <key>`, or the `heavylift_key` cookie, or (only where a
browser cannot send headers: EventSource streams, page loads) a `key` query parameter. A page
opened with `?key=` sets that cookie (HttpOnly, SameSite=Strict: other sites' forms cannot ride
on it) and redirects to the same URL without the key.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from flask import Request, Response

from heavylift.api.errors import ApiError
from heavylift.settings import Settings


class Fields(Protocol):
    """Headers, query or cookies: werkzeug's and Starlette's kinds all fit."""

    def get(self, key: str, /) -> str | None: ...


KEY_COOKIE = "heavylift_key"
KEY_PARAM = "key"


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


def key_is_valid(key: str, settings: Settings) -> bool:
    # Compare against every key in constant time so timing does not reveal a prefix; as bytes,
    # since compare_digest refuses non-ASCII str (a 500 where a 401 is due).
    given = key.encode()
    return any(hmac.compare_digest(given, known.encode()) for known in settings.api_key_set())


def require_api_key(headers: Fields, query: Fields,
                    cookies: Fields, settings: Settings,
                    allow_query: bool = False) -> None:
    if settings.auth_disabled:
        return
    key = presented_key(headers, query, cookies, allow_query)
    if key is None:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
    if not key_is_valid(key, settings):
        raise ApiError(401, "unauthorized", "invalid API key")


def remember_key(response: Response, request: Request, key: str) -> None:
    """Keep the key in the browser for later page loads, fetches and EventSources."""
    https = request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="Strict", secure=https, path="/")
