"""functions-framework entry points; all logic lives in heavylift.api.

    functions-framework --source functions/main.py --target api
    functions-framework --source functions/main.py --target on_upload_finalized \
        --signature-type cloudevent
"""

from __future__ import annotations

import sys

import functions_framework
from cloudevents.http import CloudEvent
from flask import Request, Response

from heavylift.api import handle_http, handle_upload_event
from heavylift.logs import configure_logging
from heavylift.settings import SettingsError, load_settings

try:
    configure_logging(load_settings().log_level)
except SettingsError as error:  # fail the deploy/start with one line naming the variable
    sys.exit(f"heavylift api: {error}")


@functions_framework.http
def api(request: Request) -> Response:
    return handle_http(request)


@functions_framework.cloud_event
def on_upload_finalized(event: CloudEvent) -> None:
    handle_upload_event(event)
