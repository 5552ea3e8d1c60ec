"""All configuration, read once from the environment (Secret Manager injects secrets there on GCP).

Every variable is documented in the README's configuration table. A bad value stops start-up with
one line naming the variable (see `load_settings`).
"""

from __future__ import annotations

import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlencode, urlsplit

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from heavylift.schemas import first_problem
from heavylift.tenancy import KeysError, KeyTable, key_table, parse_keys_document
from heavylift.text.encoding import TokenizerEncoding

PositiveMs = Annotated[int, Field(gt=0)]

# Dataset chunk limits, for the settings and for each request (a chunk is held in memory whole;
# a delay holds a worker slot).
MIN_CHUNK_SIZE = 1_000
MAX_CHUNK_SIZE = 200_000
MAX_CHUNK_DELAY_MS = 10_000
# Read streams (child jobs) of one distributed sync at most.
MAX_SYNC_STREAMS = 100
# BigQuery identifiers we accept (checked again where SQL is built: they are quoted, never trusted).
BQ_PROJECT_PATTERN = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
BQ_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# A key's hash tag as Redis reads it: the first "{" and the next "}", with something between.
HASH_TAG = re.compile(r"^[^{]*\{[^}]+\}")



class SettingsError(ValueError):
    """A configuration value is wrong; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # --- Redis (Bull's variable names) ---
    redis_url: str | None = Field(None, description="Full Redis URL; wins over REDIS_HOST etc.")
    redis_host: str = Field("127.0.0.1", description="Redis host when REDIS_URL is unset.")
    redis_port: int = Field(6379, ge=1, le=65535, description="Redis port.")
    redis_password: SecretStr | None = Field(None, description="Redis AUTH string (secret).")
    redis_db: int = Field(0, ge=0, le=15, description="Redis database number.")
    redis_tls: bool = Field(False, description="Use TLS (Memorystore transit encryption).")
    redis_ca_file: Path | None = Field(None, description="CA bundle that signs the server cert.")
    redis_cluster: bool = Field(
        False, description="Redis Cluster (Memorystore for Redis Cluster): the URL or host is a"
        " discovery endpoint; QUEUE_PREFIX must then hold a {hash tag}.",
    )

    # --- Queues ---
    queue_prefix: str = Field(
        "bull", pattern=r"^[A-Za-z0-9_.{}-]{1,64}$",
        description="BullMQ key prefix (Bull's default); on a cluster it needs a hash tag such as"
        " {heavylift}.",
    )
    job_concurrency: int = Field(
        2, ge=1, le=256, description="Jobs one worker process runs at once, across all its queues."
    )
    job_attempts: int = Field(3, ge=1, le=25, description="Tries per job before it fails.")
    backoff_base_ms: PositiveMs = Field(
        30_000, le=3_600_000,
        description="Exponential backoff base: retry n waits base * 2^(n-1) (30 s, 60 s, ...).",
    )
    keep_completed: int = Field(1000, ge=0, description="removeOnComplete count bound.")
    keep_failed: int = Field(5000, ge=0, description="removeOnFail count bound.")
    lock_duration_ms: PositiveMs = Field(
        20_000, description="Job lock; a killed worker's job returns within lock + stall check."
    )
    stalled_interval_ms: PositiveMs = Field(
        10_000, description="How often workers look for jobs whose lock expired."
    )
    drain_delay_s: int = Field(
        5, ge=1, le=60, description="Longest idle block on Redis (keep <= rate-limit window)."
    )

    # --- Worker runtime ---
    port: int = Field(8080, ge=1, le=65535, description="Worker /healthz and /metrics port.")
    shutdown_grace_s: float = Field(8.0, ge=0, description="Time active jobs get on SIGTERM.")
    redis_max_outage_s: float = Field(120.0, gt=0, description="Exit non-zero after this outage.")
    cpu_workers: int = Field(1, ge=1, le=64, description="Processes for CPU-bound job code.")
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="JSON log level."
    )

    # --- HTTP API (functions) ---
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, gt=0,
        description="Largest document accepted (50 MB). GCP caps a function's request body at"
        " 32 MB, so larger files use the signed upload URL.",
    )
    max_files_per_request: int = Field(10, ge=1, le=100, description="Files per multipart POST.")
    api_keys: SecretStr | None = Field(
        None, description="Comma-separated API keys accepted as 'Authorization: Bearer <key>'."
    )
    api_keys_json: SecretStr | None = Field(
        None, description="Keys document (JSON list of {sha256 or key, tenant, role, datasets}):"
        " each key's tenant, role and dataset allow-list.",
    )
    api_keys_file: FilePath | None = Field(
        None, description="Local: a file holding the keys document (instead of API_KEYS_JSON).",
    )
    auth_disabled: bool = Field(
        False, description="Local only: accept requests without a key (as admin of 'default')."
    )
    idempotency_ttl_s: int = Field(86_400, gt=0, description="How long upload keys are remembered.")
    upload_url_expiry_s: int = Field(3600, ge=60, le=7 * 86_400, description="Signed URL lifetime.")
    redis_op_timeout_s: float = Field(5.0, gt=0, description="HTTP: Redis slower than this -> 503.")

    # --- Storage ---
    storage_url: str = Field("file://./.local/storage", description="file://, gs:// or s3://")

    # --- Storage backends ---
    storage_timeout_s: float = Field(
        5.0, gt=0, le=60,
        description="Connect/read timeout and backend retry budget of one try of a storage call.",
    )
    upload_signing_secret: SecretStr | None = Field(
        None, description="HMAC key for file:// signed upload URLs (required to hand them out)."
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8080", pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="Base URL clients reach the api at; file:// upload URLs point there.",
    )
    gcs_signing_credentials_file: FilePath | None = Field(
        None, description="Service-account JSON that signs gs:// upload URLs locally.",
    )
    gcs_signing_service_account: str | None = Field(
        None, description="Account to sign as through the IAM API when credentials can't sign.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (moto, MinIO).")

    # --- Documents and AI ---
    pdf_engine: Literal["pypdfium2", "pypdf"] = Field(
        "pypdfium2", description="PDF text engine: pypdfium2 (fast) or pypdf (pure Python)."
    )
    pdf_reopen_mb: int = Field(
        20, ge=0, description="pypdfium2 reopens a PDF once reading it has allocated this many "
        "MB more (bounds memory).",
    )
    chunk_tokens: int = Field(500, ge=16, le=8192, description="Tokens per chunk (at most).")
    chunk_overlap: int = Field(50, ge=0, description="Tokens shared by consecutive chunks.")
    tokenizer_encoding: TokenizerEncoding = Field(
        "cl100k_base", description="BPE encoding (OpenAI's) for chunking and token counts."
    )
    extract_timeout_s: float = Field(600.0, gt=0, description="Time limit for one extraction.")
    openai_api_key: SecretStr | None = Field(
        None, description="Enables the OpenAI provider; without it the local provider runs."
    )
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible API base URL (default: the client's own)."
    )
    openai_chat_model: str = Field("gpt-4o-mini", description="Model for summary/themes/quotes.")
    openai_embedding_model: str = Field(
        "text-embedding-3-small", description="Model for chunk embeddings."
    )
    openai_max_retries: int = Field(
        5, ge=0, le=20, description="Client retries (429 honours Retry-After, 5xx back off)."
    )
    openai_timeout_s: float = Field(120.0, gt=0, description="Timeout of one OpenAI request.")
    openai_retry_s: float = Field(
        60.0, ge=0, le=900,
        description="Retry budget of one OpenAI request while the API is down (0: none).",
    )
    job_token_budget: int = Field(
        2_000_000, ge=0, description="Most OpenAI tokens (prompt + output) one job may use."
    )

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("CHUNK_OVERLAP must be below CHUNK_TOKENS")
        return self

    # --- Datasets (BigQuery) ---
    bq_project: str = Field(
        "heavylift-local", pattern=BQ_PROJECT_PATTERN,
        description="Project that runs the sync queries (and holds the datasets).",
    )
    bq_dataset: str = Field(
        "heavylift", pattern=BQ_NAME_PATTERN,
        description="Dataset the seed loads and the demo syncs.",
    )
    bq_scratch_dataset: str = Field(
        "heavylift_scratch", pattern=BQ_NAME_PATTERN,
        description="Dataset for each sync's materialised query result (dropped when done).",
    )
    bq_emulator_host: str | None = Field(
        None, pattern=r"^(https?://)?[A-Za-z0-9.-]+:\d{1,5}$",
        description="host:port of a BigQuery emulator's REST API (anonymous credentials).",
    )
    bq_storage_emulator_host: str | None = Field(
        None, pattern=r"^[A-Za-z0-9.-]+:\d{1,5}$",
        description="host:port of the emulator's Storage Read API (gRPC); unset: REST reads.",
    )
    bq_read_api: Literal["auto", "storage", "rest"] = Field(
        "auto", description="auto: Storage Read API unless an emulator lacks it, else REST.",
    )
    bq_timeout_s: float = Field(
        180.0, gt=0, le=3600, description="Retry budget of one BigQuery call (5xx, 429, timeouts,"
        " connection errors): outages up to BQ_TIMEOUT_S - BQ_CALL_TIMEOUT_S -"
        " BQ_RETRY_MAX_DELAY_S (110 s by default) do not fail the call.",
    )
    sync_threshold: int = Field(
        10_000, ge=0, description="Syncs of fewer rows run inline in the HTTP request.",
    )
    chunk_size: int = Field(
        50_000, ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE, description="Rows per part file."
    )
    chunk_delay_ms: int = Field(
        0, ge=0, le=MAX_CHUNK_DELAY_MS, description="Pause between chunks."
    )
    sync_distribute_rows: int = Field(
        2_000_000, ge=1, description="Queued syncs of at least this many rows run as a flow: one"
        " child job per read stream, spread over every worker (datasets.flow).",
    )
    sync_max_streams: int = Field(
        8, ge=1, le=MAX_SYNC_STREAMS, description="Read streams (child jobs) of a distributed"
        " sync at most; BigQuery may give fewer.",
    )
    sync_max_range_days: int = Field(
        731, ge=1, le=36_600, description="Longest startDate..endDate range a sync accepts.",
    )
    sync_format: Literal["parquet", "ndjson"] = Field(
        "parquet", description="Part file format when the request names none.",
    )

    # --- Live progress and pages ---
    sse_heartbeat_s: float = Field(
        15.0, gt=0, le=300, description="SSE: a ': ping' line this often keeps proxies open.",
    )
    sse_max_stream_s: float = Field(
        600.0, gt=0, description="SSE: a stream ends after this long (EventSource reconnects), so"
        " no connection is held forever.",
    )
    sse_counts_interval_s: float = Field(
        0.5, ge=0, le=10, description="Dashboard stream: at most one counts update this often.",
    )
    upload_page_signed_threshold_bytes: int = Field(
        8 * 1024 * 1024, ge=0, description="Upload page: larger files go through the signed URL.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @field_validator("redis_cluster")
    @classmethod
    def _cluster_has_one_db(cls, value: bool, info: ValidationInfo) -> bool:
        url = info.data.get("redis_url")
        url_db = urlsplit(url).path.strip("/") if url else ""
        if value and (info.data.get("redis_db") or url_db not in ("", "0")):
            raise ValueError("a Redis Cluster has only database 0: set REDIS_DB=0 (and /0 in"
                             " REDIS_URL)")
        return value

    @field_validator("queue_prefix")
    @classmethod
    def _cluster_needs_hash_tag(cls, value: str, info: ValidationInfo) -> str:
        # BullMQ's Lua scripts and our multi-stream XREAD touch several keys of a queue at once;
        # on a cluster they must share one slot, which only a common {hash tag} guarantees.
        if info.data.get("redis_cluster") and not HASH_TAG.match(value):
            raise ValueError(
                f"{value!r} has no hash tag; with REDIS_CLUSTER=true it must contain one, such"
                " as {heavylift}, so all of a queue's keys share one cluster slot")
        return value

    @model_validator(mode="after")
    def _lock_vs_stall(self) -> Settings:
        if self.stalled_interval_ms > self.lock_duration_ms:
            raise ValueError("STALLED_INTERVAL_MS must not exceed LOCK_DURATION_MS")
        return self

    @field_validator("api_keys_json")
    @classmethod
    def _keys_json(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_keys(value.get_secret_value())
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            _check_keys(value.read_text(encoding="utf-8"))
        return value

    @model_validator(mode="after")
    def _one_keys_document(self) -> Settings:
        if self.api_keys_json is not None and self.api_keys_file is not None:
            raise ValueError("set API_KEYS_JSON or API_KEYS_FILE, not both")
        try:
            self.key_table  # noqa: B018 (built here: a key listed twice stops start-up)
        except KeysError as error:
            raise ValueError(str(error)) from None
        return self

    def api_key_set(self) -> frozenset[str]:
        if self.api_keys is None:
            return frozenset()
        keys = self.api_keys.get_secret_value().split(",")
        return frozenset(key.strip() for key in keys if key.strip())

    @cached_property
    def key_table(self) -> KeyTable:
        """Every accepted key's digest and principal (heavylift.tenancy)."""
        if self.api_keys_json is not None:
            document = self.api_keys_json.get_secret_value()
        elif self.api_keys_file is not None:
            document = self.api_keys_file.read_text(encoding="utf-8")
        else:
            document = None
        entries = parse_keys_document(document) if document is not None else []
        return key_table(self.api_key_set(), entries)

    def redis_connection_url(self) -> str:
        """One URL for every Redis client (bullmq takes a URL and adds its own retry policy)."""
        if self.redis_url:
            url = self.redis_url
        else:
            scheme = "rediss" if self.redis_tls else "redis"
            auth = ""
            if self.redis_password is not None:
                auth = ":" + quote(self.redis_password.get_secret_value(), safe="") + "@"
            url = f"{scheme}://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"
        if self.redis_ca_file is not None and url.startswith("rediss://"):
            sep = "&" if "?" in url else "?"
            url += sep + urlencode({"ssl_ca_certs": str(self.redis_ca_file)})
        return url

    def redacted_redis_url(self) -> str:
        """The Redis URL with any password masked, safe for logs."""
        parts = urlsplit(self.redis_connection_url())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        auth = "***@" if parts.password else ""
        return f"{parts.scheme}://{auth}{host}{port}{parts.path}"

    # --- BigQuery deadlines and backoff (issue 12: hung reads, outages) ---
    # No BigQuery call may wait forever: each request or RPC has a deadline, and a transient
    # failure (errors.is_transient) is retried inside the call with capped exponential backoff
    # and full jitter until BQ_TIMEOUT_S (above) has passed; only then does the attempt fail
    # (transient: BullMQ retries the job). A read stream has no whole-stream deadline (a long
    # read is fine) but must deliver its next message within BQ_CALL_TIMEOUT_S.
    bq_call_timeout_s: float = Field(
        60.0, gt=0, le=600, description="Deadline of one BigQuery request or RPC; a read stream"
        " that delivers nothing for this long fails the attempt (transient).",
    )
    bq_retry_max_delay_s: float = Field(
        10.0, gt=0, le=120, description="Longest backoff between two tries of a BigQuery call"
        " (full jitter: a random sleep below 1, 2, 4... s, capped here).",
    )
    bq_query_timeout_s: float = Field(
        1800.0, gt=0, le=6 * 3600, description="Longest wait for a sync's query job to finish"
        " (each status poll has the BQ_CALL_TIMEOUT_S deadline).",
    )

    # --- Worker: stalls, job watchdog and process-wide concurrency (issue 12) ---
    # A stall (a worker died or lost its lock mid-job) is not a failure: bullmq re-queues the job
    # without using an attempt. MAX_STALLS only stops a job that keeps killing its workers.
    max_stalls: int = Field(
        10, ge=1, le=1000,
        description="Times a job may be orphaned (worker killed, lock lost) before bullmq fails"
        " it ('job stalled more than allowable limit'); stalls never use attempts.",
    )
    job_stall_timeout_s: float = Field(
        900.0, gt=0, le=86_400,
        description="Fail an attempt (it retries) when a job reports no progress for this long.",
    )
    queue_concurrency: int | None = Field(
        None, ge=1, le=256,
        description="Optional cap on one queue's jobs running at once (within JOB_CONCURRENCY).",
    )

    # --- Issue 12: findable results and storage outage tolerance ---
    # A finished job's view outlives BullMQ's KEEP_COMPLETED / KEEP_FAILED bounds (queue.records).
    result_ttl_s: int = Field(
        7 * 86_400, ge=3600, le=90 * 86_400,
        description="How long a finished job's view is kept after BullMQ removes the job.",
    )
    # Each storage call retries StorageUnavailableError with capped, jittered exponential waits
    # for this long, so an outage shorter than it costs a job no attempt at all.
    storage_retry_s: float = Field(
        60.0, ge=0, le=900,
        description="Retry budget of one storage call while storage is unavailable (0: none).",
    )

    # --- Issue 13: input limits (findings of an outside attacker test) ---
    # A 10 MB URL cost seconds of CPU and a 1,000-deep JSON body a logged 500: both are refused
    # with a 4xx before any routing or parsing work is spent on them.
    max_url_bytes: int = Field(
        8192, ge=1024, le=1024 * 1024,
        description="HTTP: a request whose path + query is longer than this gets 414.",
    )
    max_json_depth: int = Field(
        32, ge=2, le=256,
        description="HTTP: a JSON body nested deeper than this ([ and {) gets 400 json_too_deep.",
    )
    # After a Redis failure the api answers 503 at once for this long instead of letting each
    # request wait REDIS_OP_TIMEOUT_S; then one request tries Redis again (half-open).
    redis_breaker_s: float = Field(
        2.0, ge=0, le=60,
        description="HTTP: after a Redis failure, answer 503 at once for this long (0: off).",
    )
    # The api reads bodies on its event loop: a client that stops sending costs a socket, not a
    # thread, and after this long without a byte it gets 408 and the connection is closed.
    body_idle_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="HTTP: a request body that sends nothing for this long gets 408.",
    )

    # --- Issue 13: hostile files fail fast ---
    # A 10 KB PDF whose content stream inflates to 4 GiB took 5.2 GB in a pool process. Each pool
    # process is capped (runtime.offload) and extraction has a decoded-size budget
    # (documents.budget); either fails the job at once, naming the limit, with no retry.
    pool_memory_mb: int = Field(
        512, ge=128, le=65_536,
        description="Memory cap (RLIMIT_DATA) of each CPU-pool process; a task over it fails"
        " as out of memory, without retry. Worker memory is about 200 MB + CPU_WORKERS x this.",
    )
    pdf_page_decoded_mb: int = Field(
        64, ge=1, le=4096,
        description="Most MB one PDF stream may decode to (pypdf engine) and most characters"
        " (millions) of one page's text; a page over it fails the job.",
    )
    pdf_document_decoded_mb: int = Field(
        256, ge=1, le=65_536,
        description="Most characters (millions) of text one document may yield.",
    )

    # --- Issue 14: OCR of pages without a text layer (documents.ocr) ---
    ocr_enabled: bool = Field(
        True, description="OCR pages without a text layer, and images (Tesseract).",
    )
    ocr_languages: str = Field(
        "eng", pattern=r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$",
        description="Tesseract languages, '+'-joined (e.g. eng+deu); each needs its"
        " tesseract-ocr-<lang> data, checked when the worker starts.",
    )
    ocr_dpi: int = Field(
        200, ge=70, le=600, description="Resolution PDF pages are rendered at for OCR.",
    )
    ocr_page_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Time limit for the OCR of one page.",
    )
    ocr_tessdata_dir: Path = Field(
        Path("/usr/share/tesseract-ocr/5/tessdata"),
        description="Folder of Tesseract's language data (Debian's tesseract-ocr-<lang>).",
    )

    @model_validator(mode="after")
    def _budget_within_memory(self) -> Settings:
        if self.pdf_page_decoded_mb >= self.pool_memory_mb:
            raise ValueError("PDF_PAGE_DECODED_MB must be below POOL_MEMORY_MB")
        return self


def _check_keys(document: str) -> None:
    try:
        parse_keys_document(document)
    except KeysError as error:
        raise ValueError(str(error)) from None


def _one_line(error: ValidationError) -> str:
    field, message = first_problem(error)
    return f"invalid setting {(field or 'configuration').upper()}: {message}"


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read the environment once; raise SettingsError with one line naming the bad variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(_one_line(error)) from None
