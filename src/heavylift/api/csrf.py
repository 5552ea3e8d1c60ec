"""Cross-site request forgery: what a state-changing request must show before its body is read.

A browser sends the key cookie with requests that another site makes it send (forms, simple
fetches), and SameSite=Strict does not help against another port of the same host (same site).
So a write is refused when:
- the browser says it comes from elsewhere (`Sec-Fetch-Site` other than same-origin/none, or an
  `Origin` that is not the api's own);
- it was authenticated by the cookie and lacks `X-CSRF-Token` (the pages get the token from the
  server; another site cannot read it, and cannot add the header without a CORS preflight,
  which the api never answers);
- a JSON route is sent another content type (forms can only send urlencoded, multipart and
  text/plain bodies).
A client with `Authorization: Bearer` (the CLI, curl, servers) sends no Origin and is unaffected.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from heavylift.api.auth import KEY_COOKIE
from heavylift.api.errors import ApiError
from heavylift.settings import Settings

TOKEN_HEADER = "X-CSRF-Token"  # noqa: S105 (a header name)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME = frozenset({"same-origin", "none"})


def csrf_token(key: str) -> str:
    """The token that goes with a key: derived from the key itself, so it needs no server state
    and no secret of its own; knowing it reveals nothing about the key."""
    return hmac.new(key.encode(), b"heavylift-csrf-v1", hashlib.sha256).hexdigest()


def check_write(request: Request, settings: Settings, json_body: bool) -> None:
    """Raise 403/415 for a state-changing request that may be forged (see the module doc)."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in _SAME:
        raise ApiError(403, "cross_site", f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None and origin not in _own_origins(request, settings):
        raise ApiError(403, "cross_site", "cross-origin request refused (Origin is not this api)")
    cookie_key = _cookie_key(request)
    if cookie_key is not None:
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf_token(cookie_key).encode()):
            raise ApiError(403, "csrf_token", f"a write authenticated by cookie needs the "
                           f"{TOKEN_HEADER} header of the page")
    if json_body and _has_body(request):
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")


def _own_origins(request: Request, settings: Settings) -> set[str]:
    """This api's origin as the client reached it (Host, with the TLS proxy's scheme), and the
    configured PUBLIC_BASE_URL's."""
    scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
    own = {f"{scheme}://{request.headers.get('host', '')}"}
    public = urlsplit(settings.public_base_url)
    own.add(f"{public.scheme}://{public.netloc}")
    return own


def _cookie_key(request: Request) -> str | None:
    """The key, when the cookie (not an Authorization header) is what authenticates."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return None
    return request.cookies.get(KEY_COOKIE) or None


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers
