terraform {
  # 1.11 is the oldest release this configuration is formatted and checked with.
  required_version = ">= 1.11"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Direct VPC egress on gen2 functions (service_config.direct_vpc_*) needs >= 7.21.
      version = ">= 7.21, < 8"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, { app = "heavylift" })
}
