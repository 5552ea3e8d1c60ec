"""The HTTP API behind the `api` function (and the upload-finalized event handler)."""

from heavylift.api.asgi import serve
from heavylift.api.upload_finalized import handle_upload_event

__all__ = ["handle_upload_event", "serve"]
