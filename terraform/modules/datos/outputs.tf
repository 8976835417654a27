output "reader_service_account" {
  description = "mod_datos's identity: the API's service account (attach it to any other httpd host that serves this table)."
  value       = google_service_account.reader.email
}

output "loader_service_account" {
  description = "datos-loader's identity: the loader job's service account."
  value       = google_service_account.loader.email
}

output "table" {
  description = "The table, as DatosTable and the loader's `table` take it."
  value       = local.table_ref
}

output "api_service" {
  description = "The Cloud Run service of the API."
  value       = google_cloud_run_v2_service.api.name
}

output "api_url" {
  description = "Where clients reach the API: the load balancer's name, or the run.app URL."
  value       = local.load_balancer_enabled ? "https://${var.domain}" : google_cloud_run_v2_service.api.uri
}

output "api_revision" {
  description = "The API's newest ready revision (the release workflow rolls back to the one before it)."
  value       = google_cloud_run_v2_service.api.latest_ready_revision
}

output "load_balancer_address" {
  description = "With public_access = \"load_balancer\": the address domain must point at."
  value       = local.load_balancer_enabled ? google_compute_global_address.api[0].address : null
}

output "loader_job" {
  description = "The Cloud Run job of the loader (gcloud run jobs execute NAME runs it once by hand)."
  value       = google_cloud_run_v2_job.loader.name
}

output "ingest_enabled" {
  description = "Whether POST /datos is on."
  value       = var.ingest_enabled
}

output "httpd_directives" {
  description = "The mod_datos directives for these resources, for httpd hosts outside Cloud Run (add DatosCredentials)."
  value       = <<-EOT
    DatosProject ${var.project_id}
    DatosTable ${var.dataset_id}.${var.table_id}
    DatosLocation ${var.location}
    DatosTopic projects/${var.project_id}/topics/${google_pubsub_topic.datos.name}
  EOT
}

output "loader_conf" {
  description = "The datos-loader settings for these resources, for a loader outside Cloud Run (add credentials)."
  value       = <<-EOT
    project = ${var.project_id}
    table = ${var.dataset_id}.${var.table_id}
    location = ${var.location}
    subscription = ${google_pubsub_subscription.loader.name}
    dead_letter_topic = ${google_pubsub_topic.dead_letter.name}
    topic = ${google_pubsub_topic.datos.name}
    dead_letter_subscription = ${google_pubsub_subscription.dead_letter.name}
  EOT
}

output "dashboards" {
  description = "The four dashboards' ids."
  value       = { for k, d in google_monitoring_dashboard.datos : k => d.id }
}

output "loader_image" {
  description = "The image the loader's job runs (the release workflow's rollback target for the job)."
  value       = var.loader_image
}

output "public_access" {
  description = "How clients reach the API: none, run_invoker or load_balancer."
  value       = var.public_access
}
