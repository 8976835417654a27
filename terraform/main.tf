# datos on Google Cloud from one `terraform apply`: the APIs, the network the
# fleet tiers live on, one module instance per system, and the identities and
# image repository of the release workflow (cicd.tf).

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com",
  ])

  project = var.project_id
  service = each.value
  # Other workloads of the project may use these APIs too.
  disable_on_destroy = false
}

locals {
  fleet = anytrue([for s in values(var.systems) : s.fleet_cache])
}

# One network for every fleet tier: Memorystore peers with it, the API's
# instances get addresses in its subnetwork (Direct VPC egress).
resource "google_compute_network" "datos" {
  count = local.fleet ? 1 : 0

  name                    = "datos"
  auto_create_subnetworks = false

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "datos" {
  count = local.fleet ? 1 : 0

  name                     = "datos-${var.region}"
  region                   = var.region
  network                  = google_compute_network.datos[0].id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

module "system" {
  source   = "./modules/datos"
  for_each = var.systems

  project_id = var.project_id
  name       = each.key
  region     = var.region
  location   = var.location
  labels     = { app = "datos", system = each.key }

  dataset_id               = coalesce(each.value.dataset_id, replace(each.key, "-", "_"))
  table_id                 = each.value.table_id
  topic                    = "${each.key}-topic"
  subscription             = "${each.key}-subscription"
  dead_letter_topic        = "${each.key}-dlq"
  dead_letter_subscription = "${each.key}-dlq-subscription"
  deletion_protection      = each.value.deletion_protection

  api_image              = var.api_image
  min_instances          = each.value.min_instances
  max_instances          = each.value.max_instances
  concurrency            = each.value.concurrency
  fresh_for              = each.value.fresh_for
  max_bytes_billed       = each.value.max_bytes_billed
  public_access          = each.value.public_access
  domain                 = each.value.domain
  rate_limit_per_minute  = each.value.rate_limit_per_minute
  ingest_enabled         = each.value.ingest_enabled
  ingest_htpasswd_secret = each.value.ingest_htpasswd_secret

  fleet_cache = each.value.fleet_cache
  redis_tier  = each.value.redis_tier
  network     = each.value.fleet_cache ? google_compute_network.datos[0].id : null
  subnetwork  = each.value.fleet_cache ? google_compute_subnetwork.datos[0].id : null

  loader_image            = var.loader_image
  loader_schedule         = each.value.loader_schedule
  loader_interval_minutes = each.value.loader_interval_minutes
  bigquery_subscription   = each.value.bigquery_subscription

  notification_channels = var.notification_channels

  depends_on = [google_project_service.apis]
}
