"""The HTTP API behind the `api` function (and the upload-finalized event handler)."""

from heavylift.api.app import handle_http
from heavylift.api.upload_finalized import handle_upload_event

__all__ = ["handle_http", "handle_upload_event"]
