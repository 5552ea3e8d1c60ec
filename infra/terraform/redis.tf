# Memorystore, the BullMQ backend of both roles: a STANDARD_HA instance (var.redis_mode = "ha")
# or Memorystore for Redis Cluster ("cluster"), never both.
locals {
  redis_cluster = var.redis_mode == "cluster"
  # Clients connect to the HA primary, or to the cluster's discovery endpoint (they learn the
  # nodes and slots from it: REDIS_CLUSTER=true).
  redis_host = local.redis_cluster ? google_redis_cluster.queue[0].discovery_endpoints[0].address : google_redis_instance.queue[0].host
  redis_port = local.redis_cluster ? google_redis_cluster.queue[0].discovery_endpoints[0].port : google_redis_instance.queue[0].port
  # Memorystore may list two CAs during a CA rotation: trust all of them.
  redis_ca_pem = join("\n", local.redis_cluster ? flatten(google_redis_cluster.queue[0].managed_server_ca[0].ca_certs[*].certificates) : [for ca in google_redis_instance.queue[0].server_ca_certs : ca.cert])
}

# Before redis_mode the instance had no count: keep its state (and data) instead of replacing it.
moved {
  from = google_redis_instance.queue
  to   = google_redis_instance.queue[0]
}

resource "google_redis_instance" "queue" {
  count = local.redis_cluster ? 0 : 1

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

# Memorystore for Redis Cluster: shards of a primary + replicas across zones, reached through
# Private Service Connect endpoints in our VPC (the service connection policy below). BullMQ
# needs every key of a queue in one slot: QUEUE_PREFIX carries a {hash tag} (variables.tf).
# Cluster mode has no AUTH string: clients reach it only from this VPC (PSC endpoints, no
# ingress), and TLS verifies the server against managed_server_ca, as for the HA instance.
resource "google_redis_cluster" "queue" {
  count = local.redis_cluster ? 1 : 0

  name          = "${var.name_prefix}-redis"
  region        = var.region
  shard_count   = var.redis_cluster_shards
  replica_count = var.redis_cluster_replicas
  node_type     = var.redis_cluster_node_type

  psc_configs {
    network = google_compute_network.vpc.id
  }

  authorization_mode      = "AUTH_MODE_DISABLED"
  transit_encryption_mode = "TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION"

  redis_configs = {
    # As for the instance: evicted lock keys would make live jobs look stalled.
    "maxmemory-policy" = "noeviction"
  }

  zone_distribution_config {
    mode = "MULTI_ZONE"
  }

  persistence_config {
    mode = "RDB"
    rdb_config {
      rdb_snapshot_period = "ONE_HOUR"
    }
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

  deletion_protection_enabled = var.deletion_protection

  depends_on = [google_network_connectivity_service_connection_policy.redis]
}

# Private Service Connect: Memorystore for Redis Cluster creates its endpoints in this subnet
# of our VPC, as allowed by the policy (one per network, region and service class).
resource "google_compute_subnetwork" "redis_psc" {
  count = local.redis_cluster ? 1 : 0

  name                     = "${var.name_prefix}-redis-psc"
  network                  = google_compute_network.vpc.id
  region                   = var.region
  ip_cidr_range            = var.redis_psc_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_network_connectivity_service_connection_policy" "redis" {
  count = local.redis_cluster ? 1 : 0

  name          = "${var.name_prefix}-redis-psc"
  location      = var.region
  service_class = "gcp-memorystore-redis"
  description   = "PSC endpoints of the heavylift Redis Cluster"
  network       = google_compute_network.vpc.id

  psc_config {
    subnetworks = [google_compute_subnetwork.redis_psc[0].id]
  }

  depends_on = [google_project_service.enabled]
}
