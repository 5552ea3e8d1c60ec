"""functions-framework entry points; all logic lives in heavylift.api.

    functions-framework --source functions/main.py --target api
    functions-framework --source functions/main.py --target on_upload_finalized \\
        --signature-type cloudevent

`api` is an ASGI function (`functions_framework.aio`): functions-framework serves it with
Starlette under uvicorn, so a slow client or an open event stream holds no thread.
"""

from __future__ import annotations

import sys

import functions_framework
import functions_framework.aio
from cloudevents.http import CloudEvent
from starlette.requests import Request
from starlette.responses import Response

from heavylift.api import handle_upload_event, serve
from heavylift.logs import configure_logging
from heavylift.settings import SettingsError, load_settings

try:
    configure_logging(load_settings().log_level)
except SettingsError as error:  # fail the deploy/start with one line naming the variable
    sys.exit(f"heavylift api: {error}")


@functions_framework.aio.http
async def api(request: Request) -> Response:
    return await serve(request)


@functions_framework.cloud_event
def on_upload_finalized(event: CloudEvent) -> None:
    handle_upload_event(event)
