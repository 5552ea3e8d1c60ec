# The worker: a Cloud Run *worker pool* (pull-based: no endpoint, no ingress, nothing to invoke),
# CPU always allocated (a pool's instances are billed and run for their whole life), probed on
# /healthz so a wedged worker is restarted. How many instances run is set by
# var.worker_autoscaling: "fixed" pins var.worker_min_instances here; "backlog" leaves the count
# to the autoscaler in autoscaling.tf, which scales on the queue backlog.
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption is accepted for container images (no customer data inside).
  repository_id = "${var.name_prefix}-images"
  location      = var.region
  format        = "DOCKER"

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_worker_pool" "worker" {
  name                = "${var.name_prefix}-worker"
  location            = var.region
  deletion_protection = var.deletion_protection

  # Fixed mode: Terraform owns the count. Backlog mode: no block, so Terraform never resets the
  # count the autoscaler set (scaling is computed when absent from the configuration).
  dynamic "scaling" {
    for_each = local.backlog_scaling ? [] : [var.worker_min_instances]
    content {
      scaling_mode          = "MANUAL"
      manual_instance_count = scaling.value
    }
  }

  template {
    labels          = { secrets-revision = var.secrets_revision }
    service_account = google_service_account.worker.email

    vpc_access {
      network_interfaces {
        network    = google_compute_network.vpc.id
        subnetwork = google_compute_subnetwork.serverless.id
      }
      egress = "PRIVATE_RANGES_ONLY"
    }

    containers {
      name  = "worker"
      image = var.worker_image

      resources {
        limits = {
          cpu    = tostring(var.worker_cpu)
          memory = var.worker_memory
        }
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

      # PORT is not set on a worker pool: the worker's default (8080) serves /healthz and the
      # /metrics the sidecar below scrapes.
      startup_probe {
        http_get {
          path = "/healthz"
          port = local.worker_port
        }
        initial_delay_seconds = 2
        period_seconds        = 3
        timeout_seconds       = 2
        failure_threshold     = 20
      }

      liveness_probe {
        http_get {
          path = "/healthz"
          port = local.worker_port
        }
        period_seconds    = 15
        timeout_seconds   = 3
        failure_threshold = 4
      }
    }

    # Backlog mode: Google's Managed Service for Prometheus sidecar scrapes the worker's
    # /metrics (its default RunMonitoring: port 8080, path /metrics) into Cloud Monitoring, where
    # the autoscaler queries heavylift_queue_depth with PromQL.
    dynamic "containers" {
      for_each = local.backlog_scaling ? [var.metrics_sidecar_image] : []
      content {
        name       = "metrics"
        image      = containers.value
        depends_on = ["worker"]
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
