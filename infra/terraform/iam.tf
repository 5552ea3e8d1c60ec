# One service account per role, each granted only what that role does. No primitive roles.

resource "google_service_account" "functions" {
  account_id   = "${var.name_prefix}-functions"
  display_name = "heavylift HTTP + event functions"
}

resource "google_service_account" "worker" {
  account_id   = "${var.name_prefix}-worker"
  display_name = "heavylift worker (Cloud Run worker pool)"
}

resource "google_service_account" "eventarc" {
  account_id   = "${var.name_prefix}-eventarc"
  display_name = "heavylift Eventarc trigger (object finalize -> on_upload_finalized)"
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "heavylift function builds (Cloud Build)"
}

locals {
  app_service_accounts = {
    functions = google_service_account.functions.member
    worker    = google_service_account.worker.member
  }
  # The operator secrets each role reads (both read all of them: same Settings on both).
  operator_secret_grants = {
    for pair in setproduct(keys(local.app_service_accounts), keys(local.operator_secrets)) :
    "${pair[0]}/${pair[1]}" => { role = pair[0], secret = pair[1] }
  }
}

# --- Data bucket: both roles read and write objects (functions store uploads, read manifests and
# remove an upload whose enqueue failed; the worker reads uploads and writes results). Bucket
# scope, object-level role: no bucket admin, no IAM changes.
resource "google_storage_bucket_iam_member" "data_object_user" {
  for_each = local.app_service_accounts

  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = each.value
}

# --- Signed upload URLs: the function signs with its own identity through the IAM Credentials
# signBlob API (no key file). Token creator on itself only.
resource "google_service_account_iam_member" "functions_sign_self" {
  service_account_id = google_service_account.functions.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.functions.member
}

# --- Secrets, granted per secret (never project-wide).
resource "google_secret_manager_secret_iam_member" "functions" {
  for_each = { for k, v in local.operator_secret_grants : k => v if v.role == "functions" }

  secret_id = google_secret_manager_secret.operator[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}

resource "google_secret_manager_secret_iam_member" "worker" {
  for_each = { for k, v in local.operator_secret_grants : k => v if v.role == "worker" }

  secret_id = google_secret_manager_secret.operator[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.worker.member
}

resource "google_secret_manager_secret_iam_member" "functions_redis" {
  for_each = local.redis_secret_ids

  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}

resource "google_secret_manager_secret_iam_member" "worker_redis" {
  for_each = local.redis_secret_ids

  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.worker.member
}

# --- BigQuery: run query jobs in our project (the api counts rows and syncs small requests
# inline, the worker syncs large ones), open Storage Read API sessions, and read the source
# dataset only.
resource "google_project_iam_member" "bigquery" {
  for_each = {
    for pair in setproduct(keys(local.app_service_accounts), [
      "roles/bigquery.jobUser",
      "roles/bigquery.readSessionUser",
    ]) : "${pair[0]}/${pair[1]}" => { member = local.app_service_accounts[pair[0]], role = pair[1] }
  }

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

resource "google_bigquery_dataset_iam_member" "source_reader" {
  for_each = local.app_service_accounts

  project    = coalesce(var.bigquery_source_project, var.project_id)
  dataset_id = var.bigquery_source_dataset
  role       = "roles/bigquery.dataViewer"
  member     = each.value
}

# --- Eventarc: the trigger's identity receives events and invokes the event function
# (run.invoker on that one service is granted in functions.tf).
resource "google_project_iam_member" "eventarc_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.eventarc.member
}

# --- Cloud Storage's service agent publishes the bucket's events to Eventarc's Pub/Sub topic.
data "google_storage_project_service_account" "gcs" {
  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs.member
}

# --- Function builds: write logs, push the built image to gcf-artifacts, read the source zip.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}
