"""API keys (`Authorization: Bearer <key>`, keys from API_KEYS); AUTH_DISABLED: local only."""

from __future__ import annotations

import hmac

from flask import Request

from heavylift.api.errors import ApiError
from heavylift.settings import Settings


def require_api_key(request: Request, settings: Settings) -> None:
    if settings.auth_disabled:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
    # Compare against every key in constant time so timing does not reveal a prefix.
    if not any(hmac.compare_digest(token.strip(), key) for key in settings.api_key_set()):
        raise ApiError(401, "unauthorized", "invalid API key")
