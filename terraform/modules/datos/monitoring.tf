# Monitoring as code: the uptime check, the log-based metrics from the
# loader's run_finished lines, and the alert table of docs/google-cloud.md.
# Every metric type named here is in Google's published lists or is one of
# the log-based metrics below (tests/integration/gcp_metric_types.txt).

locals {
  api_host = local.load_balancer_enabled ? var.domain : trimprefix(google_cloud_run_v2_service.api.uri, "https://")

  # Filters shared by the alerts, the SLOs and the dashboards.
  api_resource    = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloud_run_v2_service.api.name}\""
  job_resource    = "resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${google_cloud_run_v2_job.loader.name}\""
  sub_resource    = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.loader.name}\""
  dlq_resource    = "resource.type=\"pubsub_topic\" AND resource.labels.topic_id=\"${google_pubsub_topic.dead_letter.name}\""
  topic_resource  = "resource.type=\"pubsub_topic\" AND resource.labels.topic_id=\"${google_pubsub_topic.datos.name}\""
  run_finished    = "${local.job_resource} AND jsonPayload.event=\"run_finished\""
  metric_prefix   = replace(var.name, "-", "_")
  alert_channels  = var.notification_channels
  loader_absent_s = 3 * var.loader_interval_minutes * 60
}

# ---------------------------------------------------------------- uptime

resource "google_monitoring_uptime_check_config" "health" {
  display_name = "${var.name}: GET /health"
  timeout      = "10s"
  period       = "60s"

  http_check {
    path           = "/health"
    port           = 443
    use_ssl        = true
    validate_ssl   = true
    request_method = "GET"

    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }

    # A private service (public_access = "none") is called with an ID token
    # of Monitoring's agent, which alone holds roles/run.invoker for it.
    dynamic "service_agent_authentication" {
      for_each = var.public_access == "none" ? [1] : []
      content {
        type = "OIDC_TOKEN"
      }
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = local.api_host
    }
  }
}

# ---------------------------------------------------------------- log-based metrics
# From the loader's last line of every run (loader/loader_run.c,
# docs/loader.md "Logs"): {"event":"run_finished","exit_code":0,
# "messages_pulled":N,"rows_loaded":N,"dead_lettered":N,"load_jobs":N,...}.
# Cloud Run turns each JSON line of stderr into jsonPayload.

resource "google_logging_metric" "loader_runs" {
  name        = "${local.metric_prefix}_loader_runs"
  description = "datos ${var.name}: loader runs, by exit code (0 done, 1 retried later, 2 configuration, 3 done with messages left to the subscription's dead-letter policy)."
  filter      = local.run_finished

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name}: loader runs"

    labels {
      key         = "exit_code"
      value_type  = "STRING"
      description = "The run's exit code."
    }
  }

  label_extractors = {
    exit_code = "EXTRACT(jsonPayload.exit_code)"
  }
}

resource "google_logging_metric" "loader_rows" {
  name            = "${local.metric_prefix}_loader_rows"
  description     = "datos ${var.name}: rows committed to the table by one loader run."
  filter          = local.run_finished
  value_extractor = "EXTRACT(jsonPayload.rows_loaded)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name}: rows loaded per run"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "loader_dead_lettered" {
  name            = "${local.metric_prefix}_loader_dead_lettered"
  description     = "datos ${var.name}: messages one loader run sent to the dead-letter topic."
  filter          = local.run_finished
  value_extractor = "EXTRACT(jsonPayload.dead_lettered)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name}: messages dead-lettered per run"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "loader_load_jobs" {
  name            = "${local.metric_prefix}_loader_load_jobs"
  description     = "datos ${var.name}: BigQuery load jobs one loader run submitted (1,500 per table per day, failed ones included)."
  filter          = local.run_finished
  value_extractor = "EXTRACT(jsonPayload.load_jobs)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name}: load jobs per run"
  }

  bucket_options {
    linear_buckets {
      num_finite_buckets = 20
      width              = 1
      offset             = 0
    }
  }
}

# The security dashboard's sources: Cloud Armor's verdicts in the load
# balancer's request logs, and IAM policy changes in the Admin Activity
# audit logs (always on, free).
resource "google_logging_metric" "armor_denied" {
  name        = "${local.metric_prefix}_armor_denied"
  description = "datos ${var.name}: requests Cloud Armor denied at the load balancer."
  filter      = "resource.type=\"http_load_balancer\" AND resource.labels.backend_service_name=\"${var.name}-api\" AND jsonPayload.enforcedSecurityPolicy.outcome=\"DENY\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name}: Cloud Armor denials"
  }
}

resource "google_logging_metric" "iam_changes" {
  name        = "${local.metric_prefix}_iam_changes"
  description = "datos ${var.name}: IAM policy changes in the project (Admin Activity audit logs)."
  filter      = "logName=\"projects/${var.project_id}/logs/cloudaudit.googleapis.com%2Factivity\" AND protoPayload.methodName=~\"(?i)setiampolicy\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name}: IAM policy changes"

    labels {
      key         = "service"
      value_type  = "STRING"
      description = "The API whose policy changed."
    }
  }

  label_extractors = {
    service = "EXTRACT(protoPayload.serviceName)"
  }
}

# ---------------------------------------------------------------- alert policies
# The alert table (docs/google-cloud.md, "Alerts").

resource "google_monitoring_alert_policy" "api_down" {
  display_name          = "${var.name}: /health failing"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "uptime check of /health fails from more than one region"
    condition_threshold {
      filter          = "resource.type=\"uptime_url\" AND metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND metric.labels.check_id=\"${google_monitoring_uptime_check_config.health.uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "300s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.labels.host"]
      }
    }
  }
}

resource "google_monitoring_alert_policy" "api_latency" {
  display_name          = "${var.name}: /datos p95 latency over ${var.latency_threshold_ms} ms"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "95th percentile of request latency"
    condition_threshold {
      filter          = "${local.api_resource} AND metric.type=\"run.googleapis.com/request_latencies\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.latency_threshold_ms
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }
}

resource "google_monitoring_alert_policy" "api_errors" {
  display_name          = "${var.name}: 5xx over ${var.error_ratio_threshold * 100}% of requests"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "share of 5xx answers"
    condition_threshold {
      filter             = "${local.api_resource} AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      denominator_filter = "${local.api_resource} AND metric.type=\"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_ratio_threshold
      duration           = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }
}

resource "google_monitoring_alert_policy" "backlog" {
  display_name          = "${var.name}: ingestion backlog"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "undelivered messages above ${var.backlog_threshold}"
    condition_threshold {
      filter          = "${local.sub_resource} AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.backlog_threshold
      duration        = "600s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  conditions {
    display_name = "oldest unacknowledged message older than ${var.oldest_unacked_threshold_seconds} s"
    condition_threshold {
      filter          = "${local.sub_resource} AND metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.oldest_unacked_threshold_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "${var.name}: dead-letter topic growing"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "messages published to the dead-letter topic"
    condition_threshold {
      filter          = "${local.dlq_resource} AND metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.topic_id"]
      }
    }
  }

  conditions {
    display_name = "messages the subscription's own dead-letter policy forwarded"
    condition_threshold {
      filter          = "${local.sub_resource} AND metric.type=\"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "600s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "loader_failing" {
  count = local.loader_scheduled ? 1 : 0

  display_name          = "${var.name}: loader runs failing"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "a run ended with exit 2 (configuration or credentials)"
    condition_threshold {
      filter          = "${local.job_resource} AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.loader_runs.name}\" AND metric.labels.exit_code=\"2\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "three runs in a row ended with exit 1 (BigQuery or Pub/Sub failing)"
    condition_threshold {
      filter          = "${local.job_resource} AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.loader_runs.name}\" AND metric.labels.exit_code=\"1\""
      comparison      = "COMPARISON_GT"
      threshold_value = 2
      duration        = "0s"
      aggregations {
        alignment_period     = "${local.loader_absent_s}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "loader_absent" {
  count = local.loader_scheduled ? 1 : 0

  display_name          = "${var.name}: no loader run for three intervals"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "no run_finished line for ${local.loader_absent_s} s"
    condition_absent {
      filter   = "${local.job_resource} AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.loader_runs.name}\""
      duration = "${local.loader_absent_s}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# The loader's lock does not reach across two executions (each mounts the
# bucket on its own), so two runs at once is worth knowing about.
resource "google_monitoring_alert_policy" "loader_overlap" {
  count = local.loader_scheduled ? 1 : 0

  display_name          = "${var.name}: two loader runs at once"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "more than one running execution"
    condition_threshold {
      filter          = "${local.job_resource} AND metric.type=\"run.googleapis.com/job/running_executions\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "0s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}
