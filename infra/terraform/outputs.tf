# Nothing secret is output: the Redis AUTH string is read from Secret Manager when needed.

output "api_url" {
  description = "Base URL of the api function (POST $api_url/api/documents/async-upload)."
  value       = google_cloudfunctions2_function.fn["api"].service_config[0].uri
}

output "event_function" {
  description = "Name of the object-finalize event function."
  value       = google_cloudfunctions2_function.fn["on_upload_finalized"].name
}

output "worker_pool" {
  description = "Name of the worker Cloud Run worker pool."
  value       = google_cloud_run_v2_worker_pool.worker.name
}

output "autoscaler_service" {
  description = "Name of the autoscaler (CREMA) Cloud Run service; null in \"fixed\" mode."
  value       = one(google_cloud_run_v2_service.autoscaler[*].name)
}

output "bucket" {
  description = "Data bucket; STORAGE_URL is gs://<bucket>."
  value       = google_storage_bucket.data.name
}

output "image_repository" {
  description = "Artifact Registry path to push the worker image to."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "redis_host" {
  description = "Private address of Memorystore: the HA primary or the cluster's discovery endpoint (reachable from the VPC only)."
  value       = "${local.redis_host}:${local.redis_port}"
}

output "secret_ids" {
  description = "Secret Manager secrets whose values the operator adds (gcloud secrets versions add)."
  value       = { for k, s in google_secret_manager_secret.operator : local.operator_secrets[k] => s.secret_id }
}

output "service_accounts" {
  description = "Service account of each role."
  value = {
    functions = google_service_account.functions.email
    worker    = google_service_account.worker.email
    eventarc  = google_service_account.eventarc.email
    build     = google_service_account.build.email
    scaler    = one(google_service_account.autoscaler[*].email)
  }
}
