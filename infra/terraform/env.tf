# The environment both roles read (heavylift.settings.Settings). One map for the api function,
# the event function and the worker, so a setting can never be wired on one role and forgotten
# on another. tests/test_infra.py fails when a Settings field is missing here.
locals {
  data_bucket_name = coalesce(var.bucket_name, "${var.project_id}-${var.name_prefix}-data")
  redis_ca_dir     = "/etc/heavylift/redis-ca"

  app_env_defaults = {
    # Redis: host/port/password parts rather than REDIS_URL, so the AUTH string stays a secret.
    # On a cluster (redis_mode = "cluster") the host is its discovery endpoint.
    REDIS_HOST    = local.redis_host
    REDIS_PORT    = tostring(local.redis_port)
    REDIS_DB      = "0"
    REDIS_TLS     = "true"
    REDIS_CA_FILE = "${local.redis_ca_dir}/ca.pem"
    REDIS_CLUSTER = tostring(local.redis_cluster)

    # Queues (the product's defaults; lock/stall chosen so a killed worker's job is retaken
    # within ~30 s; backoff 30 s, 60 s so a retry outlasts a storage outage). RESULT_TTL_S keeps
    # a finished job's view after KEEP_COMPLETED / KEEP_FAILED drop it from BullMQ.
    QUEUE_PREFIX        = var.queue_prefix
    JOB_CONCURRENCY     = tostring(var.job_concurrency)
    JOB_ATTEMPTS        = "3"
    BACKOFF_BASE_MS     = "30000"
    KEEP_COMPLETED      = "1000"
    KEEP_FAILED         = "5000"
    LOCK_DURATION_MS    = "20000"
    STALLED_INTERVAL_MS = "10000"
    DRAIN_DELAY_S       = "5"
    RESULT_TTL_S        = tostring(7 * 86400)

    # Worker runtime (harmless on the functions, which do not run a worker loop). A stall (a
    # killed worker) uses no attempt; MAX_STALLS only stops a job that keeps killing workers.
    MAX_STALLS          = "10"
    JOB_STALL_TIMEOUT_S = "900"
    SHUTDOWN_GRACE_S    = tostring(var.worker_shutdown_grace_s)
    REDIS_MAX_OUTAGE_S  = "120"
    CPU_WORKERS         = tostring(var.worker_cpu)
    LOG_LEVEL           = var.log_level

    # Storage and intake. MAX_UPLOAD_BYTES covers signed-URL uploads (50 MB); a multipart body
    # to the api function is capped by Cloud Functions itself at 32 MB whatever this says.
    STORAGE_URL       = "gs://${google_storage_bucket.data.name}"
    STORAGE_TIMEOUT_S = "5"
    STORAGE_RETRY_S   = "60"
    MAX_UPLOAD_BYTES  = tostring(var.max_upload_bytes)

    # HTTP API. AUTH_DISABLED is a local-only switch: always off here.
    AUTH_DISABLED         = "false"
    MAX_FILES_PER_REQUEST = "10"
    IDEMPOTENCY_TTL_S     = "86400"
    UPLOAD_URL_EXPIRY_S   = "3600"
    REDIS_OP_TIMEOUT_S    = "5"
    REDIS_BREAKER_S       = "2"
    MAX_URL_BYTES         = "8192"
    MAX_JSON_DEPTH        = "32"
    BODY_IDLE_TIMEOUT_S   = "30"

    # Live progress and pages. An SSE stream ends well before the function's request timeout;
    # EventSource reconnects and resumes from Last-Event-ID.
    SSE_HEARTBEAT_S                    = "15"
    SSE_MAX_STREAM_S                   = "300"
    SSE_COUNTS_INTERVAL_S              = "0.5"
    UPLOAD_PAGE_SIGNED_THRESHOLD_BYTES = tostring(8 * 1024 * 1024)

    # Documents and AI (the OpenAI key itself is a secret below).
    PDF_ENGINE              = "pypdfium2"
    CHUNK_TOKENS            = "500"
    CHUNK_OVERLAP           = "50"
    TOKENIZER_ENCODING      = "cl100k_base"
    EXTRACT_TIMEOUT_S       = "600"
    PDF_REOPEN_MB           = "20"
    POOL_MEMORY_MB          = "512"
    PDF_PAGE_DECODED_MB     = "64"
    PDF_DOCUMENT_DECODED_MB = "256"
    OCR_ENABLED             = "true"
    OCR_LANGUAGES           = "eng"
    OCR_DPI                 = "200"
    OCR_PAGE_TIMEOUT_S      = "60"
    OCR_TESSDATA_DIR        = "/usr/share/tesseract-ocr/5/tessdata"
    OPENAI_CHAT_MODEL       = var.openai_chat_model
    OPENAI_EMBEDDING_MODEL  = var.openai_embedding_model
    OPENAI_MAX_RETRIES      = "5"
    OPENAI_TIMEOUT_S        = "120"
    OPENAI_RETRY_S          = "60"
    JOB_TOKEN_BUDGET        = tostring(var.job_token_budget)

    # Dataset sync (BigQuery jobs run in our project; the source may live in another).
    BQ_PROJECT           = var.project_id
    BQ_DATASET           = var.bigquery_source_dataset
    BQ_SCRATCH_DATASET   = google_bigquery_dataset.scratch.dataset_id
    BQ_READ_API          = "storage"
    BQ_TIMEOUT_S         = "180"
    BQ_CALL_TIMEOUT_S    = "60"
    BQ_RETRY_MAX_DELAY_S = "10"
    BQ_QUERY_TIMEOUT_S   = "1800"
    SYNC_THRESHOLD       = tostring(var.sync_threshold)
    SYNC_DISTRIBUTE_ROWS = tostring(var.sync_distribute_rows)
    SYNC_MAX_STREAMS     = tostring(var.sync_max_streams)
    SYNC_MAX_RANGE_DAYS  = "731"
    SYNC_FORMAT          = "parquet"
    CHUNK_SIZE           = "50000"
    CHUNK_DELAY_MS       = "0"
  }
  app_env = merge(local.app_env_defaults, var.extra_env)

  # Only the functions hand out signed upload URLs: they sign as themselves through the IAM
  # Credentials API (no key file on GCP).
  function_env = merge(local.app_env, {
    GCS_SIGNING_SERVICE_ACCOUNT = google_service_account.functions.email
  })
  worker_env = local.app_env

  # Environment variable name => Secret Manager secret id (always the latest version). A
  # cluster has no AUTH string, so REDIS_PASSWORD is set with the HA instance only.
  secret_env = merge({
    OPENAI_API_KEY        = google_secret_manager_secret.operator["openai_api_key"].secret_id
    API_KEYS              = google_secret_manager_secret.operator["api_keys"].secret_id
    API_KEYS_JSON         = google_secret_manager_secret.operator["api_keys_json"].secret_id
    UPLOAD_SIGNING_SECRET = google_secret_manager_secret.operator["upload_signing_secret"].secret_id
  }, { for s in google_secret_manager_secret.redis_auth : "REDIS_PASSWORD" => s.secret_id })

  # The Redis secrets each role reads: the CA always, the AUTH string with the HA instance.
  redis_secret_ids = merge(
    { ca = google_secret_manager_secret.redis_ca.id },
    { for s in google_secret_manager_secret.redis_auth : "auth" => s.id },
  )
}
