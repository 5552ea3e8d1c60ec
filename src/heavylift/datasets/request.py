"""The dataset sync request (`POST /api/datasets/sync` body) and the resolved spec a job carries.

`SyncRequest` is what a client may send; `parse_request` validates it against the settings
(maximum range) and resolves the optional knobs into a `SyncSpec`, which is what the job stores:
a queued job keeps the chunking it was planned with even if the settings change before it runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from heavylift.schemas import first_problem
from heavylift.settings import (
    BQ_NAME_PATTERN,
    MAX_CHUNK_DELAY_MS,
    MAX_CHUNK_SIZE,
    MAX_SYNC_STREAMS,
    MIN_CHUNK_SIZE,
    Settings,
)
from heavylift.tenancy import DEFAULT_TENANT

JobType = Literal["forecast", "actuals"]
SinkFormat = Literal["parquet", "ndjson"]

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: Any) -> Any:
    """Only `YYYY-MM-DD` strings (or dates): no timestamps, no numbers read as epoch days."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO date (YYYY-MM-DD)")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
# A BigQuery dataset id: it ends up (validated, backtick-quoted) in the SQL text as identifier.
DatasetId = Annotated[str, Field(pattern=BQ_NAME_PATTERN, strict=True)]
# Filter values travel as query parameters; the pattern keeps them to plain names all the same.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", strict=True)]


class SyncRequest(BaseModel):
    """A client's sync request; field names are the API's (camelCase)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    datasetId: DatasetId
    environment: Name
    volumeType: Name
    startDate: IsoDate
    endDate: IsoDate
    jobType: JobType
    # Informational only: the service counts itself and never trusts this number.
    totalCount: StrictInt | None = Field(None, ge=0)
    chunkSize: StrictInt | None = Field(None, ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)
    chunkDelayMs: StrictInt | None = Field(None, ge=0, le=MAX_CHUNK_DELAY_MS)
    format: SinkFormat | None = None

    @model_validator(mode="after")
    def _start_not_after_end(self) -> SyncRequest:
        if self.startDate > self.endDate:
            raise ValueError("endDate: must not be before startDate")
        return self


class SyncSpec(SyncRequest):
    """A validated request with every knob resolved: the data of a `datasets` job."""

    chunkSize: StrictInt = Field(ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)
    chunkDelayMs: StrictInt = Field(ge=0, le=MAX_CHUNK_DELAY_MS)
    format: SinkFormat
    # Read streams at most: 1 reads in this job; more makes the job a flow (datasets.flow).
    # Chosen when queued (SYNC_DISTRIBUTE_ROWS), so every attempt runs the same way.
    streams: StrictInt = Field(1, ge=1, le=MAX_SYNC_STREAMS)
    # Whose sync: set from the key (never from the body), it scopes the job's status route.
    tenant: str = DEFAULT_TENANT

    def job_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SyncRequestError(ValueError):
    """A request the API must refuse (400/422); `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_request(
    payload: Mapping[str, Any], settings: Settings, tenant: str = DEFAULT_TENANT
) -> SyncSpec:
    """Validate a request body and resolve it against the settings, or raise SyncRequestError."""
    if not isinstance(payload, Mapping):
        raise SyncRequestError("body", "must be a JSON object")
    try:
        request = SyncRequest.model_validate(dict(payload))
    except ValidationError as error:
        raise _first_problem(error) from None
    days = (request.endDate - request.startDate).days + 1
    if days > settings.sync_max_range_days:
        raise SyncRequestError(
            "endDate", f"range of {days} days exceeds the maximum of "
            f"{settings.sync_max_range_days} (SYNC_MAX_RANGE_DAYS)",
        )
    return SyncSpec(
        **request.model_dump(exclude={"chunkSize", "chunkDelayMs", "format"}),
        chunkSize=request.chunkSize or settings.chunk_size,
        chunkDelayMs=(
            settings.chunk_delay_ms if request.chunkDelayMs is None else request.chunkDelayMs
        ),
        format=request.format or settings.sync_format,
        tenant=tenant,
    )


def _first_problem(error: ValidationError) -> SyncRequestError:
    field, message = first_problem(error)
    if field:
        return SyncRequestError(field, message)
    # Model-level checks put the field name first in their message.
    field, _, rest = message.partition(": ")
    return SyncRequestError(field, rest) if rest else SyncRequestError("body", message)
