# One datos system. The root module (terraform/main.tf) enables the APIs,
# makes the shared network and instantiates this module once per system.
#
# No service-account key is created here: a key in terraform's state would be
# a secret in a file many people can read. The programs run on Cloud Run with
# their service accounts attached (DatosCredentials metadata / credentials =
# metadata). The only secret terraform makes, the fleet tier's signing key, is
# written write-only and never stored in the state.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  table_ref = "${var.project_id}.${var.dataset_id}.${var.table_id}"
  # Pub/Sub forwards messages past max_delivery_attempts, and writes a
  # BigQuery subscription's rows, with this identity.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  # Uptime checks of a service that is not public call it as this agent.
  monitoring_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"

  # The columns of the table, read from the schema the table is made from.
  table_columns = [for c in jsondecode(file("${path.module}/datos-schema.json")) : c.name]
  # A BigQuery subscription's write_metadata needs all of these columns.
  metadata_columns      = ["subscription_name", "message_id", "publish_time", "attributes"]
  table_has_metadata    = length(setsubtract(local.metadata_columns, local.table_columns)) == 0
  loader_scheduled      = !var.bigquery_subscription
  load_balancer_enabled = var.public_access == "load_balancer"
}
