# The APIs the deployment uses. serviceusage and cloudresourcemanager must already be on
# (docs/deploy.md enables them with gcloud) because Terraform needs them to enable the rest.
locals {
  services = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "compute.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    # Private Service Connect for Memorystore for Redis Cluster (redis_mode = "cluster").
    "networkconnectivity.googleapis.com",
    "serviceconsumermanagement.googleapis.com",
    "monitoring.googleapis.com",
    "parametermanager.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  service = each.value
  # Other workloads in the project may use these APIs too: never switch them off on destroy.
  disable_on_destroy = false
}
