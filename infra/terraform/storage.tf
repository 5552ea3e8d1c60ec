# The data bucket (STORAGE_URL): uploads/<documentId>/..., results and datasets/<jobId>/...
resource "google_storage_bucket" "data" {
  #checkov:skip=CKV_GCP_62:Access is audited with Cloud Audit Logs (Data Access); legacy usage-log buckets add a second unreviewed bucket.
  #checkov:skip=CKV_GCP_78:Objects are write-once under unique ids; soft delete (7 days) covers accidental deletes without versioning doubling 50 MB uploads.
  name     = local.data_bucket_name
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  soft_delete_policy {
    retention_duration_seconds = 604800
  }

  # Browsers PUT straight to signed URLs (uploads over the 32 MB function body limit).
  cors {
    origin          = var.cors_allowed_origins
    method          = ["PUT", "POST", "OPTIONS"]
    response_header = ["Content-Type", "Content-Range", "Location", "X-Goog-Resumable"]
    max_age_seconds = 3600
  }

  # Uploads whose processing finished (or that were never finalized into a job) go stale.
  lifecycle_rule {
    condition {
      age            = var.upload_retention_days
      matches_prefix = ["uploads/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.enabled]
}

# Function source archives (build/function-source.zip from infra/package.py).
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build artifacts written by Terraform; Cloud Audit Logs cover access.
  #checkov:skip=CKV_GCP_78:Each archive is named by its content hash, so nothing is ever overwritten.
  name     = "${local.data_bucket_name}-src"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_object" "function_source" {
  # A new name per content hash makes Terraform redeploy the functions when the code changes.
  name   = "function-source-${filemd5(var.function_source_zip)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.function_source_zip
}
