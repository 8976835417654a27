# public_access = "load_balancer": an external HTTPS load balancer in front
# of the service, through a serverless NEG, with a Cloud Armor policy that
# limits each client IP. The service's ingress then admits only it.

resource "google_compute_region_network_endpoint_group" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name                  = "${var.name}-api"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloud_run_v2_service.api.name
  }
}

resource "google_compute_security_policy" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name        = "${var.name}-api"
  description = "datos ${var.name}: requests per client IP"
  type        = "CLOUD_ARMOR"

  # Past rate_limit_per_minute, a client IP is answered 429 until its rate
  # falls back under the limit.
  rule {
    action      = "throttle"
    priority    = 1000
    description = "rate limit per client IP"

    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }

    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"

      rate_limit_threshold {
        count        = var.rate_limit_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    action      = "allow"
    priority    = 2147483647
    description = "everything else"

    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}

resource "google_compute_backend_service" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name                  = "${var.name}-api"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = google_compute_security_policy.api[0].id

  backend {
    group = google_compute_region_network_endpoint_group.api[0].id
  }

  # Every request is logged, with Cloud Armor's verdict: the security
  # dashboard counts the denials from these lines.
  log_config {
    enable      = true
    sample_rate = 1
  }
}

resource "google_compute_url_map" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name            = "${var.name}-api"
  default_service = google_compute_backend_service.api[0].id
}

resource "google_compute_managed_ssl_certificate" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name = "${var.name}-api"

  managed {
    domains = [var.domain]
  }
}

resource "google_compute_target_https_proxy" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name             = "${var.name}-api"
  url_map          = google_compute_url_map.api[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.api[0].id]
}

resource "google_compute_global_address" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name = "${var.name}-api"
}

resource "google_compute_global_forwarding_rule" "api" {
  count = local.load_balancer_enabled ? 1 : 0

  name                  = "${var.name}-api"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.api[0].address
  port_range            = "443"
  target                = google_compute_target_https_proxy.api[0].id
}
