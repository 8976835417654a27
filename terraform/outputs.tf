output "reader_service_account" {
  description = "mod_datos's identity: attach it to the httpd hosts, or create its key with gcloud."
  value       = google_service_account.reader.email
}

output "loader_service_account" {
  description = "datos-loader's identity: attach it to the host (or job) that runs the loader."
  value       = google_service_account.loader.email
}

output "table" {
  description = "The table, as DatosTable and the loader's `table` take it."
  value       = local.table_ref
}

output "httpd_directives" {
  description = "The mod_datos directives for these resources (add DatosCredentials)."
  value       = <<-EOT
    DatosProject ${var.project_id}
    DatosTable ${var.dataset_id}.${var.table_id}
    DatosLocation ${var.location}
    DatosTopic projects/${var.project_id}/topics/${google_pubsub_topic.datos.name}
  EOT
}

output "loader_conf" {
  description = "The datos-loader settings for these resources (add credentials)."
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
