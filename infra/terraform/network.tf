# Direct VPC egress (not a Serverless VPC Access connector): no connector VMs to size, pay for
# or patch; instances take addresses straight from this subnet, and latency to Redis is lower.
# Each instance uses addresses from the subnet, so size it for the peak of
# functions + workers (a /24 serves ~100 instances comfortably).
resource "google_compute_network" "vpc" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false

  depends_on = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "serverless" {
  name                     = "${var.name_prefix}-serverless"
  network                  = google_compute_network.vpc.id
  region                   = var.region
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  # Flow logs (sampled) so a failing Redis connection can be diagnosed from the VPC side.
  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing in this VPC accepts connections from outside it: serverless instances only dial out
# (to Redis over the peering). An explicit, logged deny instead of relying on implied rules.
resource "google_compute_firewall" "deny_ingress" {
  name      = "${var.name_prefix}-deny-ingress"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65000

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
