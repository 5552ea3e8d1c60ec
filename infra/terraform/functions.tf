# Cloud Functions gen2: the HTTP `api` and the CloudEvent `on_upload_finalized`, both built from
# build/function-source.zip (infra/package.py): functions/main.py + heavylift + requirements.txt.
#
# Request bodies to a gen2 function are capped at 32 MB by the platform. MAX_UPLOAD_BYTES (50 MB)
# is honoured for signed-URL uploads that go straight to the bucket; multipart bodies above
# 32 MB are refused by Google before our code runs.
# What differs between the two functions; everything else is shared by the one resource below.
locals {
  functions = {
    api = {
      name          = "api"
      max_instances = var.api_max_instances
      memory        = "1Gi" # /tmp is in memory: a spooled 32 MB body lives here
      ingress       = var.api_ingress
      event_trigger = false
      # ASGI (uvicorn): an open SSE stream or a slow client is a request but holds no thread.
      concurrency = var.api_request_concurrency
    }
    on_upload_finalized = {
      name          = "on-upload-finalized"
      max_instances = var.event_max_instances
      memory        = "512Mi" # reads metadata, enqueues; no body
      # Eventarc's Pub/Sub push counts as internal traffic; nothing else may call it.
      ingress       = "ALLOW_INTERNAL_ONLY"
      event_trigger = true
      concurrency   = 8 # gunicorn's threads: one per request
    }
  }
}

resource "google_cloudfunctions2_function" "fn" {
  #checkov:skip=CKV_GCP_124:The public HTTP API is the product; callers authenticate with API keys (API_KEYS). var.api_ingress narrows it (e.g. ALLOW_INTERNAL_AND_GCLB behind a load balancer with Cloud Armor); the event function is ALLOW_INTERNAL_ONLY.
  for_each = local.functions

  name     = "${var.name_prefix}-${each.value.name}"
  location = var.region
  labels   = { secrets-revision = var.secrets_revision }

  build_config {
    runtime         = var.python_runtime
    entry_point     = each.key
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    available_cpu                    = "1"
    available_memory                 = each.value.memory
    timeout_seconds                  = 300
    max_instance_request_concurrency = each.value.concurrency
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.functions.email

    environment_variables = local.function_env

    dynamic "secret_environment_variables" {
      for_each = local.secret_env
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }

    secret_volumes {
      mount_path = local.redis_ca_dir
      project_id = var.project_id
      secret     = google_secret_manager_secret.redis_ca.secret_id
      versions {
        version = "latest"
        path    = "ca.pem"
      }
    }

    direct_vpc_network_interface {
      network    = google_compute_network.vpc.id
      subnetwork = google_compute_subnetwork.serverless.id
    }
    direct_vpc_egress = "VPC_EGRESS_PRIVATE_RANGES_ONLY"
  }

  dynamic "event_trigger" {
    for_each = each.value.event_trigger ? [each.key] : []
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.storage.object.v1.finalized"
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.eventarc.email
      # Object-finalize events of our data bucket only. Eventarc cannot filter on a prefix:
      # the function itself ignores objects outside uploads/ (e.g. datasets/ parts).
      event_filters {
        attribute = "bucket"
        value     = google_storage_bucket.data.name
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.functions,
    google_secret_manager_secret_iam_member.functions_redis,
    google_secret_manager_secret_version.redis_auth,
    google_secret_manager_secret_version.redis_ca,
    google_project_iam_member.build,
    google_project_iam_member.eventarc_receiver,
    google_project_iam_member.gcs_pubsub_publisher,
  ]
}

# The two functions were separate resources before; these keep existing state (no replacement).
moved {
  from = google_cloudfunctions2_function.api
  to   = google_cloudfunctions2_function.fn["api"]
}

moved {
  from = google_cloudfunctions2_function.on_upload_finalized
  to   = google_cloudfunctions2_function.fn["on_upload_finalized"]
}

# The public API authenticates callers itself (Authorization: Bearer <one of API_KEYS>), so the
# platform lets the configured members (allUsers by default) invoke it.
resource "google_cloud_run_v2_service_iam_member" "api_invoker" {
  for_each = toset(var.api_invoker_members)

  name     = google_cloudfunctions2_function.fn["api"].service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}

# Eventarc calls the event function with its own service account.
resource "google_cloud_run_v2_service_iam_member" "eventarc_invoker" {
  name     = google_cloudfunctions2_function.fn["on_upload_finalized"].service_config[0].service
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.eventarc.email}"
}
