# Google Cloud resources of datos: the BigQuery table and its view, the
# Pub/Sub topics and subscriptions of the ingestion path, and one service
# account per program with only the roles it needs.
#
# No service-account key is created here: a key in terraform's state would be
# a secret in a file many people can read. Hosts on Google Cloud use the
# attached service account (DatosCredentials metadata / credentials =
# metadata); anywhere else, create a key with gcloud (docs/google-cloud.md).

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "apis" {
  for_each = toset([
    "bigquery.googleapis.com",
    "pubsub.googleapis.com",
    "iam.googleapis.com",
  ])

  project = var.project_id
  service = each.value
  # Other workloads of the project may use these APIs too.
  disable_on_destroy = false
}

locals {
  table_ref = "${var.project_id}.${var.dataset_id}.${var.table_id}"
  # Pub/Sub forwards messages past max_delivery_attempts with this identity.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
