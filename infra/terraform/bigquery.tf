# Each queued sync first writes its query result to a table of its own (reads of query results
# through the Storage Read API are not possible), then reads that table in CHUNK_SIZE chunks.
# Those tables live here, expire on their own after a day, and are dropped when the sync ends.
resource "google_bigquery_dataset" "scratch" {
  #checkov:skip=CKV_GCP_81:Scratch tables hold short-lived copies of rows already in the source dataset, whose own encryption applies; Google-managed keys here.
  project                     = var.project_id
  dataset_id                  = "${replace(var.name_prefix, "-", "_")}_scratch"
  location                    = var.bigquery_location
  description                 = "heavylift: per-sync query results (BQ_SCRATCH_DATASET)"
  default_table_expiration_ms = 24 * 60 * 60 * 1000
  delete_contents_on_destroy  = true

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_dataset_iam_member" "scratch_editor" {
  for_each = local.app_service_accounts

  project    = var.project_id
  dataset_id = google_bigquery_dataset.scratch.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = each.value
}
