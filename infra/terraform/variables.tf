# Inputs. Nothing secret is a variable: secret values go to Secret Manager (see secrets.tf).

variable "project_id" {
  description = "Google Cloud project id to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 chars, lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region for every regional resource (functions, worker, Redis, bucket, subnet)."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like europe-west1 or us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; lets several environments share a project."
  type        = string
  default     = "heavylift"

  validation {
    # Service account ids are the tightest limit (30 chars incl. the longest suffix, -functions).
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 chars of lowercase letters, digits and hyphens."
  }
}

variable "labels" {
  description = "Labels added to every resource that supports them."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the worker service from `terraform destroy`."
  type        = bool
  default     = true
}

# --- network

variable "subnet_cidr" {
  description = "Subnet the functions and the worker egress from (Direct VPC egress); /26 or larger."
  type        = string
  default     = "10.20.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && tonumber(split("/", var.subnet_cidr)[1]) <= 26
    error_message = "subnet_cidr must be an IPv4 CIDR of /26 or larger."
  }
}

# --- Redis

variable "redis_mode" {
  description = "ha: a Memorystore STANDARD_HA instance; cluster: Memorystore for Redis Cluster (needs a hash-tagged queue_prefix such as {heavylift})."
  type        = string
  default     = "ha"

  validation {
    condition     = contains(["ha", "cluster"], var.redis_mode)
    error_message = "redis_mode must be ha or cluster."
  }
}

variable "redis_cluster_shards" {
  description = "Cluster mode: number of shards (each a primary + redis_cluster_replicas)."
  type        = number
  default     = 3

  validation {
    condition     = var.redis_cluster_shards >= 1 && var.redis_cluster_shards <= 250
    error_message = "redis_cluster_shards must be between 1 and 250."
  }
}

variable "redis_cluster_replicas" {
  description = "Cluster mode: replicas per shard (1 or 2 survive a zone failure; 0 is dev only)."
  type        = number
  default     = 1

  validation {
    condition     = contains([0, 1, 2], var.redis_cluster_replicas)
    error_message = "redis_cluster_replicas must be 0, 1 or 2."
  }
}

variable "redis_cluster_node_type" {
  description = "Cluster mode: node type of every shard."
  type        = string
  default     = "REDIS_STANDARD_SMALL"

  validation {
    condition     = contains(["REDIS_SHARED_CORE_NANO", "REDIS_STANDARD_SMALL", "REDIS_HIGHMEM_MEDIUM", "REDIS_HIGHMEM_XLARGE"], var.redis_cluster_node_type)
    error_message = "redis_cluster_node_type must be REDIS_SHARED_CORE_NANO, REDIS_STANDARD_SMALL, REDIS_HIGHMEM_MEDIUM or REDIS_HIGHMEM_XLARGE."
  }
}

variable "redis_psc_cidr" {
  description = "Cluster mode: subnet for the cluster's Private Service Connect endpoints."
  type        = string
  default     = "10.20.1.0/28"

  validation {
    condition     = can(cidrhost(var.redis_psc_cidr, 0))
    error_message = "redis_psc_cidr must be an IPv4 CIDR."
  }
}

variable "redis_tier" {
  description = "Memorystore tier: STANDARD_HA (replica + automatic failover) or BASIC (dev only)."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["STANDARD_HA", "BASIC"], var.redis_tier)
    error_message = "redis_tier must be STANDARD_HA or BASIC."
  }
}

variable "redis_memory_gb" {
  description = "Memorystore capacity in GB. Jobs are small (payloads live in the bucket); 1 GB holds ~1M job hashes."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_memory_gb >= 1 && var.redis_memory_gb <= 300
    error_message = "redis_memory_gb must be between 1 and 300."
  }
}

variable "redis_version" {
  description = "Memorystore Redis version (7.x: BullMQ needs >= 6.2)."
  type        = string
  default     = "REDIS_7_2"

  validation {
    condition     = can(regex("^REDIS_7_[0-9]+$", var.redis_version))
    error_message = "redis_version must be a Redis 7.x version such as REDIS_7_2."
  }
}

# --- storage

variable "bucket_name" {
  description = "Name of the data bucket (STORAGE_URL); null means <project_id>-<name_prefix>-data."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid Cloud Storage bucket name."
  }
}

variable "cors_allowed_origins" {
  description = "Web origins whose browsers PUT files to signed upload URLs."
  type        = list(string)

  validation {
    condition     = length(var.cors_allowed_origins) > 0 && alltrue([for o in var.cors_allowed_origins : can(regex("^https://[^/*]+$|^http://localhost(:[0-9]+)?$", o))])
    error_message = "cors_allowed_origins must be https:// origins (or http://localhost:PORT), without paths or wildcards."
  }
}

variable "upload_retention_days" {
  description = "Days after which objects under uploads/ are deleted (results are kept)."
  type        = number
  default     = 30

  validation {
    condition     = var.upload_retention_days >= 1
    error_message = "upload_retention_days must be at least 1."
  }
}

variable "max_upload_bytes" {
  description = "MAX_UPLOAD_BYTES: largest accepted document. Signed-URL uploads honour it; multipart bodies to the function are also capped at 32 MB by Cloud Functions."
  type        = number
  default     = 52428800

  validation {
    condition     = var.max_upload_bytes > 0 && var.max_upload_bytes <= 5497558138880
    error_message = "max_upload_bytes must be positive and at most 5 TiB (a Cloud Storage object)."
  }
}

# --- functions

variable "function_source_zip" {
  description = "Path of the function source archive built by `python infra/package.py`."
  type        = string
  default     = "../../build/function-source.zip"

  validation {
    condition     = endswith(var.function_source_zip, ".zip")
    error_message = "function_source_zip must be a .zip file."
  }
}

variable "python_runtime" {
  description = "Cloud Functions Python runtime."
  type        = string
  default     = "python311"

  validation {
    condition     = can(regex("^python3(1[1-9])$", var.python_runtime))
    error_message = "python_runtime must be python311 or newer (the project needs Python >= 3.11)."
  }
}

variable "api_ingress" {
  description = "Ingress of the api function: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB (behind a load balancer)."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.api_ingress)
    error_message = "api_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "api_invoker_members" {
  description = "Who may invoke the api function at the platform level. The API checks its own keys (API_KEYS), so the default is allUsers; set [] or specific principals to add IAM in front."
  type        = list(string)
  default     = ["allUsers"]

  validation {
    condition     = alltrue([for m in var.api_invoker_members : can(regex("^(allUsers|(user|group|serviceAccount|domain):.+)$", m))])
    error_message = "api_invoker_members entries must be allUsers or IAM members such as serviceAccount:x@y."
  }
}

variable "api_max_instances" {
  description = "Upper bound of api function instances (each serves 8 concurrent requests)."
  type        = number
  default     = 20

  validation {
    condition     = var.api_max_instances >= 1 && var.api_max_instances <= 1000
    error_message = "api_max_instances must be between 1 and 1000."
  }
}

variable "api_request_concurrency" {
  description = "Requests one api instance takes at once, open SSE streams included (they hold no thread under the ASGI server)."
  type        = number
  default     = 250
  validation {
    condition     = var.api_request_concurrency >= 1 && var.api_request_concurrency <= 1000
    error_message = "api_request_concurrency must be between 1 and 1000."
  }
}

variable "event_max_instances" {
  description = "Upper bound of on_upload_finalized instances."
  type        = number
  default     = 10

  validation {
    condition     = var.event_max_instances >= 1 && var.event_max_instances <= 1000
    error_message = "event_max_instances must be between 1 and 1000."
  }
}

# --- worker

variable "worker_image" {
  description = "Worker image, e.g. europe-west1-docker.pkg.dev/PROJECT/heavylift-images/worker:TAG (see outputs.image_repository)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/.+(:[A-Za-z0-9_.-]+|@sha256:[a-f0-9]{64})$", var.worker_image))
    error_message = "worker_image must be a full image reference with a tag or digest."
  }
}

variable "worker_autoscaling" {
  description = "How many worker instances run: \"backlog\" (the autoscaler in autoscaling.tf scales between worker_min_instances and worker_max_instances on queued + running jobs) or \"fixed\" (always worker_min_instances)."
  type        = string
  default     = "backlog"

  validation {
    condition     = contains(["backlog", "fixed"], var.worker_autoscaling)
    error_message = "worker_autoscaling must be \"backlog\" or \"fixed\"."
  }
}

variable "worker_min_instances" {
  description = "Workers always running (>= 1: BullMQ workers pull, and the backlog metric comes from a running worker); the instance count in \"fixed\" mode."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_min_instances >= 1
    error_message = "worker_min_instances must be at least 1."
  }
}

variable "worker_max_instances" {
  description = "Most worker instances the autoscaler starts (\"backlog\" mode); see docs/deploy.md for the sizing."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_max_instances >= var.worker_min_instances && var.worker_max_instances <= 1000
    error_message = "worker_max_instances must be between worker_min_instances and 1000."
  }
}

variable "worker_backlog_per_instance" {
  description = "Autoscaler target: unfinished jobs (waiting + prioritized + paused + delayed + active) per worker instance; instances = ceil(unfinished / this). JOB_CONCURRENCY x drain target / job seconds (docs/deploy.md)."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_backlog_per_instance >= 1
    error_message = "worker_backlog_per_instance must be at least 1."
  }
}

variable "metrics_sidecar_image" {
  description = "Google's Managed Service for Prometheus sidecar for Cloud Run, which scrapes the worker's /metrics in \"backlog\" mode."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"

  validation {
    condition     = can(regex("^[a-z0-9.-]+/.+(:[A-Za-z0-9_.-]+|@sha256:[a-f0-9]{64})$", var.metrics_sidecar_image))
    error_message = "metrics_sidecar_image must be a full image reference with a tag or digest."
  }
}

variable "autoscaler_image" {
  description = "Google's pre-built CREMA (Cloud Run External Metrics Autoscaling) image, deployed as the autoscaler service in \"backlog\" mode."
  type        = string
  default     = "us-central1-docker.pkg.dev/cloud-run-oss-images/crema-v1/autoscaler:1.0"

  validation {
    condition     = can(regex("^[a-z0-9.-]+/.+(:[A-Za-z0-9_.-]+|@sha256:[a-f0-9]{64})$", var.autoscaler_image))
    error_message = "autoscaler_image must be a full image reference with a tag or digest."
  }
}

variable "autoscaler_base_image" {
  description = "Base image the CREMA image runs on (it is built FROM scratch for Cloud Run's automatic base image updates); Google's guide uses us-central1's java25 runtime (the service's own region is better where Cloud Run offers it there)."
  type        = string
  default     = "us-central1-docker.pkg.dev/serverless-runtimes/google-24/runtimes/java25"

  validation {
    condition     = can(regex("^[a-z0-9-]+-docker\\.pkg\\.dev/serverless-runtimes/.+/runtimes/java[0-9]+$", var.autoscaler_base_image))
    error_message = "autoscaler_base_image must be a Cloud Run serverless-runtimes Java base image."
  }
}

variable "worker_cpu" {
  description = "vCPUs per worker instance; also CPU_WORKERS (processes for CPU-bound job code)."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2, 4, 6, 8], var.worker_cpu)
    error_message = "worker_cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "worker_memory" {
  description = "Memory per worker instance (dataset sync peaks at ~500 MB per job; PDFs less)."
  type        = string
  default     = "2Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.worker_memory))
    error_message = "worker_memory must look like 512Mi or 2Gi."
  }
}

variable "job_concurrency" {
  description = "JOB_CONCURRENCY: jobs one worker instance runs at once."
  type        = number
  default     = 2

  validation {
    condition     = var.job_concurrency >= 1 && var.job_concurrency <= 256
    error_message = "job_concurrency must be between 1 and 256."
  }
}

variable "worker_shutdown_grace_s" {
  description = "SHUTDOWN_GRACE_S: time active jobs get after SIGTERM. Cloud Run kills the container 10 s after SIGTERM, so this stays below 10."
  type        = number
  default     = 8

  validation {
    condition     = var.worker_shutdown_grace_s >= 0 && var.worker_shutdown_grace_s < 10
    error_message = "worker_shutdown_grace_s must be in [0, 10): Cloud Run sends SIGKILL 10 s after SIGTERM."
  }
}

# --- application

variable "queue_prefix" {
  description = "QUEUE_PREFIX: BullMQ key prefix (\"bull\" interoperates with Node producers and bull-board); with redis_mode = \"cluster\" it needs a hash tag, such as {heavylift}."
  type        = string
  default     = "bull"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.{}-]{1,64}$", var.queue_prefix))
    error_message = "queue_prefix must be 1-64 chars of letters, digits, _ . - { }."
  }

  # The worker refuses the same at start-up (Settings); caught here before anything deploys.
  validation {
    condition     = var.redis_mode != "cluster" || can(regex("^[^{]*[{][^}]+[}]", var.queue_prefix))
    error_message = "With redis_mode = \"cluster\", queue_prefix must contain a {hash tag} such as {heavylift}, so all of a queue's keys share one cluster slot."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of functions and worker."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "sync_threshold" {
  description = "SYNC_THRESHOLD: dataset syncs with fewer rows run inline in the api function."
  type        = number
  default     = 10000

  validation {
    condition     = var.sync_threshold >= 0
    error_message = "sync_threshold must not be negative."
  }
}

variable "sync_distribute_rows" {
  description = "SYNC_DISTRIBUTE_ROWS: queued syncs of at least this many rows run as a BullMQ flow, one child job per read stream, spread over every worker instance."
  type        = number
  default     = 2000000

  validation {
    condition     = var.sync_distribute_rows >= 1
    error_message = "sync_distribute_rows must be at least 1."
  }
}

variable "sync_max_streams" {
  description = "SYNC_MAX_STREAMS: read streams (child jobs) of one distributed sync at most; size it to worker_max_instances x JOB_CONCURRENCY."
  type        = number
  default     = 8

  validation {
    condition     = var.sync_max_streams >= 1 && var.sync_max_streams <= 100
    error_message = "sync_max_streams must be between 1 and 100."
  }
}

variable "bigquery_source_project" {
  description = "Project of the BigQuery source dataset; null means project_id."
  type        = string
  default     = null
}

variable "bigquery_source_dataset" {
  description = "BigQuery dataset the syncs read (granted dataViewer to the functions and the worker)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.bigquery_source_dataset))
    error_message = "bigquery_source_dataset must be a dataset id (letters, digits, underscores)."
  }
}

variable "bigquery_location" {
  description = "Location of the scratch dataset; must match the source dataset's (e.g. US, EU)."
  type        = string
  default     = "US"

  validation {
    condition     = length(var.bigquery_location) > 0
    error_message = "bigquery_location must not be empty."
  }
}

variable "openai_chat_model" {
  description = "OPENAI_CHAT_MODEL: model for summaries, themes and quotes."
  type        = string
  default     = "gpt-4o-mini"

  validation {
    condition     = length(var.openai_chat_model) > 0
    error_message = "openai_chat_model must not be empty."
  }
}

variable "openai_embedding_model" {
  description = "OPENAI_EMBEDDING_MODEL: model for chunk embeddings."
  type        = string
  default     = "text-embedding-3-small"

  validation {
    condition     = length(var.openai_embedding_model) > 0
    error_message = "openai_embedding_model must not be empty."
  }
}

variable "job_token_budget" {
  description = "JOB_TOKEN_BUDGET: most OpenAI tokens one job may spend (caps the cost of one document)."
  type        = number
  default     = 2000000

  validation {
    condition     = var.job_token_budget >= 0
    error_message = "job_token_budget must not be negative."
  }
}

variable "secrets_revision" {
  description = "Bump after adding a secret version (key rotation): rolls new function and worker revisions, which read the `latest` versions at start."
  type        = string
  default     = "1"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,63}$", var.secrets_revision))
    error_message = "secrets_revision must be a label value: 1-63 lowercase letters, digits, hyphens."
  }
}

variable "extra_env" {
  description = "Extra non-secret environment for functions and worker (overrides the defaults in env.tf)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_env) : can(regex("^[A-Z][A-Z0-9_]*$", k)) && !contains(["REDIS_PASSWORD", "OPENAI_API_KEY", "API_KEYS", "API_KEYS_JSON", "UPLOAD_SIGNING_SECRET", "REDIS_URL"], k)])
    error_message = "extra_env keys must be UPPER_SNAKE_CASE and must not carry secrets (those come from Secret Manager)."
  }
}
