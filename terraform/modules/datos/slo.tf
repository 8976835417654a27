# SLOs over 28 days, each with multi-window, multi-burn-rate alerts: a fast
# burn (14.4x the allowed rate over 1 h, confirmed over 5 min: 2% of the
# 28-day budget in an hour) and a slow one (6x over 6 h, confirmed over
# 30 min: 5% of the budget in six hours). The short window stops the alert
# soon after the burn stops.

resource "google_monitoring_custom_service" "datos" {
  service_id   = "${var.name}-datos"
  display_name = "datos ${var.name}"
}

resource "google_monitoring_slo" "availability" {
  service      = google_monitoring_custom_service.datos.service_id
  slo_id       = "availability"
  display_name = "${var.name}: ${var.slo_availability_goal * 100}% of requests are not 5xx (28 days)"

  goal                = var.slo_availability_goal
  rolling_period_days = 28

  request_based_sli {
    good_total_ratio {
      bad_service_filter   = "${local.api_resource} AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      total_service_filter = "${local.api_resource} AND metric.type=\"run.googleapis.com/request_count\""
    }
  }
}

resource "google_monitoring_slo" "latency" {
  service      = google_monitoring_custom_service.datos.service_id
  slo_id       = "latency"
  display_name = "${var.name}: ${var.slo_latency_goal * 100}% of requests under ${var.slo_latency_ms} ms (28 days)"

  goal                = var.slo_latency_goal
  rolling_period_days = 28

  request_based_sli {
    distribution_cut {
      distribution_filter = "${local.api_resource} AND metric.type=\"run.googleapis.com/request_latencies\""
      range {
        max = var.slo_latency_ms
      }
    }
  }
}

# Freshness: a minute is good when the oldest message waiting to be loaded
# is younger than slo_freshness_seconds.
resource "google_monitoring_slo" "freshness" {
  service      = google_monitoring_custom_service.datos.service_id
  slo_id       = "freshness"
  display_name = "${var.name}: oldest unacked message under ${var.slo_freshness_seconds} s, ${var.slo_freshness_goal * 100}% of minutes (28 days)"

  goal                = var.slo_freshness_goal
  rolling_period_days = 28

  windows_based_sli {
    window_period = "60s"
    metric_mean_in_range {
      time_series = "${local.sub_resource} AND metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      range {
        min = 0
        max = var.slo_freshness_seconds
      }
    }
  }
}

locals {
  slos = {
    availability = google_monitoring_slo.availability.name
    latency      = google_monitoring_slo.latency.name
    freshness    = google_monitoring_slo.freshness.name
  }
  # name => [burn rate, long window, short window]
  burn_rates = {
    fast = { rate = 14.4, long = "3600s", short = "300s" }
    slow = { rate = 6, long = "21600s", short = "1800s" }
  }
  burn_alerts = {
    for pair in setproduct(keys(local.slos), keys(local.burn_rates)) :
    "${pair[0]}-${pair[1]}" => {
      slo   = local.slos[pair[0]]
      label = pair[0]
      speed = pair[1]
      rate  = local.burn_rates[pair[1]].rate
      long  = local.burn_rates[pair[1]].long
      short = local.burn_rates[pair[1]].short
    }
  }
}

resource "google_monitoring_alert_policy" "burn_rate" {
  for_each = local.burn_alerts

  display_name          = "${var.name}: ${each.value.label} SLO burning ${each.value.rate}x (${each.value.speed})"
  combiner              = "AND"
  notification_channels = local.alert_channels

  conditions {
    display_name = "burn rate over ${each.value.long}"
    condition_threshold {
      filter          = "select_slo_burn_rate(\"${each.value.slo}\", \"${each.value.long}\")"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.rate
      duration        = "0s"
    }
  }

  conditions {
    display_name = "burn rate over ${each.value.short}"
    condition_threshold {
      filter          = "select_slo_burn_rate(\"${each.value.slo}\", \"${each.value.short}\")"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.rate
      duration        = "0s"
    }
  }
}
