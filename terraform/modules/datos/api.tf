# The API: httpd+mod_datos (docker/httpd.Dockerfile) on Cloud Run, as the
# reader service account, configured by the DATOS_* variables the image's
# datos-container.conf reads.

locals {
  api_env = merge(
    {
      DATOS_PROJECT          = var.project_id
      DATOS_TABLE            = "${var.dataset_id}.${var.table_id}"
      DATOS_LOCATION         = var.location
      DATOS_CREDENTIALS      = "metadata"
      DATOS_FRESH_FOR        = var.fresh_for
      DATOS_MAX_BYTES_BILLED = var.max_bytes_billed
      DATOS_CACHE            = var.fleet_cache ? "redis:${google_redis_instance.cache[0].host}:${google_redis_instance.cache[0].port}" : "shmcb"
    },
    var.ingest_enabled ? {
      DATOS_INGEST = "On"
      DATOS_TOPIC  = google_pubsub_topic.datos.id
    } : {},
  )

  # datos.conf reads the ingestion users from a fixed file in /etc/apache2,
  # where Cloud Run cannot mount a single file; the mounted secret is named
  # instead by one more <Location> section, given to apache2 on its command
  # line (the image's entry point passes its arguments to apache2; -c
  # applies each line after the configuration files, so this AuthUserFile
  # replaces datos.conf's).
  htpasswd_dir = "/run/secrets/datos-ingest"
  api_args = var.ingest_enabled ? [
    "-c", "<Location \"/datos\">",
    "-c", "AuthUserFile ${local.htpasswd_dir}/htpasswd",
    "-c", "</Location>",
  ] : []
}

resource "google_cloud_run_v2_service" "api" {
  name     = "${var.name}-api"
  location = var.region
  labels   = var.labels

  # none: callers need roles/run.invoker (and an ID token); run_invoker: the
  # run.app URL for everyone; load_balancer: only the load balancer's
  # traffic reaches the service, and the run.app URL answers 404.
  ingress             = local.load_balancer_enabled ? "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" : "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.reader.email
    max_instance_request_concurrency = var.concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    labels                           = var.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    # The fleet tier is on the VPC: Direct VPC egress, private ranges only
    # (Google's APIs stay on the default path).
    dynamic "vpc_access" {
      for_each = var.fleet_cache ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.network
          subnetwork = var.subnetwork
        }
      }
    }

    containers {
      image = var.api_image
      args  = local.api_args

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.api_cpu
          memory = var.api_memory
        }
        # CPU always allocated: the refreshes of the cache run between
        # requests, which a CPU throttled outside requests would stall.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.api_env
        content {
          name  = env.key
          value = env.value
        }
      }

      # The fleet tier's key (DatosCacheSecretFile) comes as a variable the
      # image's entry point writes to a file of its own user, mode 0600, and
      # removes from the environment before it starts apache2. A secret
      # volume would not do: httpd runs as www-data from the start (the
      # image never runs as root), and in the second generation execution
      # environment Cloud Run's secret files belong to root: with the mode
      # mod_datos requires of a key (no group or other bits, e.g. 0400)
      # www-data could not read it, and with one www-data can read (0444)
      # every user can.
      dynamic "env" {
        for_each = var.fleet_cache ? [1] : []
        content {
          name = "DATOS_CACHE_SECRET"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.cache_key[0].secret_id
              version = google_secret_manager_secret_version.cache_key[0].version
            }
          }
        }
      }

      # An instance takes traffic only once it has an answer to serve:
      # /health?ready is 503 {"status":"warming"} until then. Two minutes
      # (60 x 2 s) covers a cold BigQuery query and its retries.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 1
        failure_threshold     = 60
        http_get {
          path = "/health?ready"
          port = 8080
        }
      }

      # Plain /health never touches Google: it fails only when httpd does.
      liveness_probe {
        period_seconds    = 10
        timeout_seconds   = 2
        failure_threshold = 3
        http_get {
          path = "/health"
          port = 8080
        }
      }

      dynamic "volume_mounts" {
        for_each = var.ingest_enabled ? [1] : []
        content {
          name       = "ingest-users"
          mount_path = local.htpasswd_dir
        }
      }
    }

    dynamic "volumes" {
      for_each = var.ingest_enabled ? [1] : []
      content {
        name = "ingest-users"
        secret {
          secret = var.ingest_htpasswd_secret
          items {
            version = "latest"
            path    = "htpasswd"
          }
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  depends_on = [
    google_secret_manager_secret_iam_member.reader_reads_cache_key,
    google_secret_manager_secret_iam_member.reader_reads_ingest_users,
  ]
}

# The one public grant of the whole configuration, and only when asked for:
# run_invoker opens the run.app URL; load_balancer needs it too, since a
# serverless NEG calls the service without an identity (ingress then keeps
# everything but the load balancer out).
resource "google_cloud_run_v2_service_iam_member" "public" {
  count = var.public_access == "none" ? 0 : 1

  name     = google_cloud_run_v2_service.api.name
  location = google_cloud_run_v2_service.api.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# A private service is checked by Monitoring's own agent, with an ID token.
resource "google_cloud_run_v2_service_iam_member" "uptime_invokes" {
  count = var.public_access == "none" ? 1 : 0

  name     = google_cloud_run_v2_service.api.name
  location = google_cloud_run_v2_service.api.location
  role     = "roles/run.invoker"
  member   = local.monitoring_service_agent
}

# ---------------------------------------------------------------- secrets

# The key that signs the fleet tier's entries (DatosCacheSecretFile):
# generated at apply, written write-only, so it is in Secret Manager and in
# no file, state included. Bump secret_data_wo_version to rotate it.
ephemeral "random_password" "cache_key" {
  count = var.fleet_cache ? 1 : 0

  length  = 64
  special = false
}

resource "google_secret_manager_secret" "cache_key" {
  count = var.fleet_cache ? 1 : 0

  secret_id = "${var.name}-cache-key"
  labels    = var.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_secret_manager_secret_version" "cache_key" {
  count = var.fleet_cache ? 1 : 0

  secret                 = google_secret_manager_secret.cache_key[0].id
  secret_data_wo         = ephemeral.random_password.cache_key[0].result
  secret_data_wo_version = 1
}

resource "google_secret_manager_secret_iam_member" "reader_reads_cache_key" {
  count = var.fleet_cache ? 1 : 0

  secret_id = google_secret_manager_secret.cache_key[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.reader.email}"
}

resource "google_secret_manager_secret_iam_member" "reader_reads_ingest_users" {
  count = var.ingest_enabled ? 1 : 0

  secret_id = "projects/${var.project_id}/secrets/${var.ingest_htpasswd_secret}"
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.reader.email}"
}
