# Backlog autoscaling (var.worker_autoscaling = "backlog"): Google's Cloud Run External Metrics
# Autoscaling (CREMA, KEDA scalers in a Cloud Run service) sets the worker pool's instance count
# from a PromQL query on Managed Service for Prometheus, which the worker pool's metrics sidecar
# (worker.tf) fills from the worker's /metrics. Why Prometheus rather than KEDA's redis-lists
# scaler: every heavylift job has a priority, so BullMQ keeps waiting jobs in the `prioritized`
# sorted set and a list-length scaler would read ~0 while thousands wait.
locals {
  backlog_scaling = var.worker_autoscaling == "backlog"
  worker_port     = 8080 # heavylift.settings.Settings.port's default; probes and sidecar use it

  # Jobs not finished yet: the backlog (heavylift_queue_backlog's states) plus the running ones,
  # so the pool does not shrink under jobs still running once the waiting count reaches zero.
  # Every worker reports the same queue-wide counts (read from Redis), hence max, not sum,
  # across instances.
  outstanding_states = ["waiting", "prioritized", "paused", "delayed", "active"]
  outstanding_query  = "sum(max by (queue, state) (heavylift_queue_depth{state=~'${join("|", local.outstanding_states)}'}))"

  # KEDA/CREMA semantics: instances = ceil(outstanding / worker_backlog_per_instance), clamped
  # to [min, max]. Scale-up follows at once (HPA default); scale-down waits 5 minutes of lower
  # readings and sheds at most half the instances a minute (a removed instance hands its
  # running jobs back, which costs their progress).
  autoscaler_config = {
    apiVersion = "crema/v1"
    kind       = "CremaConfig"
    spec = {
      pollingInterval = 30
      triggerAuthentications = [{
        metadata = { name = "service-account" }
        spec     = { podIdentity = { provider = "gcp" } }
      }]
      scaledObjects = [{
        spec = {
          scaleTargetRef  = { name = "projects/${var.project_id}/locations/${var.region}/workerpools/${google_cloud_run_v2_worker_pool.worker.name}" }
          minReplicaCount = var.worker_min_instances
          maxReplicaCount = var.worker_max_instances
          triggers = [{
            type              = "prometheus"
            name              = "outstanding-jobs"
            authenticationRef = { name = "service-account" }
            metadata = {
              serverAddress = "https://monitoring.googleapis.com/v1/projects/${var.project_id}/location/global/prometheus"
              query         = local.outstanding_query
              threshold     = tostring(var.worker_backlog_per_instance)
            }
          }]
          advanced = {
            horizontalPodAutoscalerConfig = {
              behavior = {
                scaleDown = {
                  stabilizationWindowSeconds = 300
                  policies                   = [{ type = "Percent", value = 50, periodSeconds = 60 }]
                }
              }
            }
          }
        }
      }]
    }
  }
  autoscaler_yaml = yamlencode(local.autoscaler_config)
  autoscaler_sa   = one(google_service_account.autoscaler[*].member)
}

resource "google_service_account" "autoscaler" {
  count = local.backlog_scaling ? 1 : 0

  account_id   = "${var.name_prefix}-scaler"
  display_name = "heavylift worker autoscaler (CREMA)"
}

# CREMA reads its configuration from Parameter Manager. The version id is the content's hash: a
# changed configuration is a new version, and the autoscaler rolls onto it (CREMA_CONFIG below).
resource "google_parameter_manager_parameter" "autoscaler" {
  count = local.backlog_scaling ? 1 : 0

  parameter_id = "${var.name_prefix}-autoscaler"
  format       = "YAML"

  depends_on = [google_project_service.enabled]
}

resource "google_parameter_manager_parameter_version" "autoscaler" {
  count = local.backlog_scaling ? 1 : 0

  parameter            = google_parameter_manager_parameter.autoscaler[0].id
  parameter_version_id = "v-${substr(sha256(local.autoscaler_yaml), 0, 16)}"
  parameter_data       = local.autoscaler_yaml

  lifecycle {
    create_before_destroy = true
  }
}

# The autoscaler itself: Google's pre-built CREMA image, one instance polling every 30 s
# (pollingInterval), CPU always allocated because it loops rather than serving requests.
# Internal ingress and no run.invoker grant: nothing calls it.
resource "google_cloud_run_v2_service" "autoscaler" {
  count = local.backlog_scaling ? 1 : 0

  name                = "${var.name_prefix}-autoscaler"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection

  template {
    service_account = google_service_account.autoscaler[0].email

    scaling {
      min_instance_count = 1
      max_instance_count = 1
    }

    containers {
      image          = var.autoscaler_image
      base_image_uri = var.autoscaler_base_image

      resources {
        cpu_idle = false
      }

      env {
        name  = "CREMA_CONFIG"
        value = google_parameter_manager_parameter_version.autoscaler[0].name
      }
      # Its own scaler metrics and structured logging cost extra and are not needed: it logs
      # each decision ("[SCALER] Recommended instances ...") to stdout either way.
      env {
        name  = "OUTPUT_SCALER_METRICS"
        value = "False"
      }
      env {
        name  = "ENABLE_CLOUD_LOGGING"
        value = "False"
      }
    }
  }

  depends_on = [
    google_project_iam_member.autoscaler,
    google_cloud_run_v2_worker_pool_iam_member.autoscaler,
    google_service_account_iam_member.autoscaler_acts_as_worker,
  ]
}

# --- What the autoscaler may do, and nothing more: read its configuration (Parameter Manager has
# no per-parameter IAM, so project scope; the project's parameters hold configuration, not
# secrets), run PromQL queries (Cloud Monitoring reads are project-scoped), change this one
# worker pool (run.developer on the pool only, as Google's CREMA guide recommends) and act as
# the pool's service account, which a Cloud Run update requires.
resource "google_project_iam_member" "autoscaler" {
  for_each = local.backlog_scaling ? toset([
    "roles/parametermanager.parameterViewer",
    "roles/monitoring.viewer",
  ]) : toset([])

  project = var.project_id
  role    = each.value
  member  = local.autoscaler_sa
}

resource "google_cloud_run_v2_worker_pool_iam_member" "autoscaler" {
  count = local.backlog_scaling ? 1 : 0

  project  = var.project_id
  location = google_cloud_run_v2_worker_pool.worker.location
  name     = google_cloud_run_v2_worker_pool.worker.name
  role     = "roles/run.developer"
  member   = local.autoscaler_sa
}

resource "google_service_account_iam_member" "autoscaler_acts_as_worker" {
  count = local.backlog_scaling ? 1 : 0

  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.autoscaler_sa
}

# The worker pool's metrics sidecar writes the scraped series to Managed Service for Prometheus.
resource "google_project_iam_member" "worker_metric_writer" {
  count = local.backlog_scaling ? 1 : 0

  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = google_service_account.worker.member
}
