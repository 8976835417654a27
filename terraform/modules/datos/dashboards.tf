# The four dashboards: executive (availability, latency, throughput, cost),
# operations, scaling and cost, and security. Each is a JSON template in
# dashboards/, filled with this system's names.

locals {
  dashboard_vars = {
    name              = var.name
    service           = google_cloud_run_v2_service.api.name
    job               = google_cloud_run_v2_job.loader.name
    subscription      = google_pubsub_subscription.loader.name
    topic             = google_pubsub_topic.datos.name
    dead_letter_topic = google_pubsub_topic.dead_letter.name
    dataset           = google_bigquery_dataset.datos.dataset_id
    metric_prefix     = local.metric_prefix
    uptime_check_id   = google_monitoring_uptime_check_config.health.uptime_check_id
    slo_availability  = google_monitoring_slo.availability.name
    slo_latency       = google_monitoring_slo.latency.name
    slo_freshness     = google_monitoring_slo.freshness.name
  }
}

resource "google_monitoring_dashboard" "datos" {
  for_each = toset(["executive", "operations", "scaling-cost", "security"])

  dashboard_json = templatefile("${path.module}/dashboards/${each.key}.json.tftpl", local.dashboard_vars)

  # The log-based metrics must exist before a chart names them.
  depends_on = [
    google_logging_metric.loader_runs,
    google_logging_metric.loader_rows,
    google_logging_metric.loader_dead_lettered,
    google_logging_metric.loader_load_jobs,
    google_logging_metric.armor_denied,
    google_logging_metric.iam_changes,
  ]
}
