# Memorystore for Redis, the BullMQ backend of both roles.
resource "google_redis_instance" "queue" {
  name           = "${var.name_prefix}-redis"
  region         = var.region
  tier           = var.redis_tier
  memory_size_gb = var.redis_memory_gb
  redis_version  = var.redis_version

  authorized_network = google_compute_network.vpc.id
  connect_mode       = "DIRECT_PEERING"

  # AUTH + TLS: the AUTH string goes to Secret Manager (secrets.tf); clients verify the
  # server certificate against server_ca_certs, mounted as REDIS_CA_FILE.
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  redis_configs = {
    # BullMQ keeps job locks as keys with a TTL: the default volatile-lru may evict them,
    # making live jobs look stalled. With noeviction a full Redis refuses writes instead.
    "maxmemory-policy" = "noeviction"
  }

  # Jobs survive a full restart (STANDARD_HA already survives a zone failure).
  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = "ONE_HOUR"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"
      start_time {
        hours   = 3
        minutes = 0
      }
    }
  }

  depends_on = [google_project_service.enabled]
}
