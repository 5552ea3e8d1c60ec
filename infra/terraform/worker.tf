# The worker: a Cloud Run v2 *service* (not a worker pool) because Cloud Run probes /healthz only
# on services, and Terraform support for worker pools is newer; ingress is internal-only and
# nobody is granted run.invoker, so the HTTP port serves the probes and nothing else.
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption is accepted for container images (no customer data inside).
  repository_id = "${var.name_prefix}-images"
  location      = var.region
  format        = "DOCKER"

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service" "worker" {
  name                = "${var.name_prefix}-worker"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection

  template {
    labels          = { secrets-revision = var.secrets_revision }
    service_account = google_service_account.worker.email
    # Pulls queued work, never waits on requests: keep the instance count explicit.
    max_instance_request_concurrency = 1

    scaling {
      min_instance_count = var.worker_min_instances
      max_instance_count = var.worker_max_instances
    }

    vpc_access {
      network_interfaces {
        network    = google_compute_network.vpc.id
        subnetwork = google_compute_subnetwork.serverless.id
      }
      egress = "PRIVATE_RANGES_ONLY"
    }

    containers {
      image = var.worker_image

      ports {
        container_port = 8080 # Cloud Run sets PORT from this
      }

      resources {
        limits = {
          cpu    = tostring(var.worker_cpu)
          memory = var.worker_memory
        }
        # CPU always allocated: the worker renews BullMQ locks and pulls jobs between requests.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.worker_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = "redis-ca"
        mount_path = local.redis_ca_dir
      }

      startup_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
        initial_delay_seconds = 2
        period_seconds        = 3
        timeout_seconds       = 2
        failure_threshold     = 20
      }

      liveness_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
        period_seconds    = 15
        timeout_seconds   = 3
        failure_threshold = 4
      }
    }

    volumes {
      name = "redis-ca"
      secret {
        secret = google_secret_manager_secret.redis_ca.secret_id
        items {
          version = "latest"
          path    = "ca.pem"
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.worker,
    google_secret_manager_secret_iam_member.worker_redis,
    google_secret_manager_secret_version.redis_auth,
    google_secret_manager_secret_version.redis_ca,
  ]
}
