# The loader: datos-loader (docker/loader.Dockerfile) as a Cloud Run job,
# started by Cloud Scheduler alone, with its journal on a Cloud Storage
# volume so that a killed task's journal is there for the next run
# (docs/google-cloud.md, "The loader's journal on Cloud Storage").

locals {
  loader_state_dir = "/var/lib/datos-loader"
  # The loader's longest run: it pulls for max_seconds, then settles the
  # batch in flight (its load job may take job_timeout, each call retried for
  # up to retry_deadline), then acknowledges. The task's timeout is above
  # that, with two minutes to spare for start-up and the last acks.
  loader_retry_deadline = 120
  loader_longest_run    = var.loader_max_seconds + var.loader_job_timeout + local.loader_retry_deadline
  loader_task_timeout   = local.loader_longest_run + 120

  loader_conf = templatefile("${path.module}/loader.conf.tftpl", {
    name                     = var.name
    project                  = var.project_id
    table                    = "${var.dataset_id}.${var.table_id}"
    location                 = var.location
    subscription             = google_pubsub_subscription.loader.name
    dead_letter_topic        = google_pubsub_topic.dead_letter.name
    topic                    = google_pubsub_topic.datos.name
    dead_letter_subscription = google_pubsub_subscription.dead_letter.name
    max_seconds              = var.loader_max_seconds
    job_timeout              = var.loader_job_timeout
    retry_deadline           = local.loader_retry_deadline
    state_dir                = local.loader_state_dir
  })
}

# The journal and the run lock. One bucket per system: two subscriptions
# never share a journal.
resource "google_storage_bucket" "loader_state" {
  name     = "${var.project_id}-${var.name}-state"
  location = var.region
  labels   = var.labels

  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # A journal entry lives from a load job's insert to its acks; one left
  # by a killed run is settled by the next. Nothing in here is kept longer,
  # so older versions are of no use.
  versioning {
    enabled = false
  }
}

resource "google_storage_bucket_iam_member" "loader_keeps_journal" {
  bucket = google_storage_bucket.loader_state.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.loader.email}"
}

# The settings file. Nothing in it is secret, but a mounted secret is the
# way Cloud Run puts a file in a container.
resource "google_secret_manager_secret" "loader_conf" {
  secret_id = "${var.name}-loader-conf"
  labels    = var.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_secret_manager_secret_version" "loader_conf" {
  secret      = google_secret_manager_secret.loader_conf.id
  secret_data = local.loader_conf
}

resource "google_secret_manager_secret_iam_member" "loader_reads_conf" {
  secret_id = google_secret_manager_secret.loader_conf.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.loader.email}"
}

resource "google_cloud_run_v2_job" "loader" {
  name                = "${var.name}-loader"
  location            = var.region
  labels              = var.labels
  deletion_protection = false

  template {
    # One task, never two at once, never retried by Cloud Run: the next
    # scheduled run is the retry, and it starts from the journal.
    task_count  = 1
    parallelism = 1

    template {
      max_retries           = 0
      timeout               = "${local.loader_task_timeout}s"
      service_account       = google_service_account.loader.email
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      containers {
        image = var.loader_image

        resources {
          limits = {
            cpu    = "1"
            memory = var.loader_memory
          }
        }

        volume_mounts {
          name       = "state"
          mount_path = local.loader_state_dir
        }

        # Over the image's /etc/datos: its loader.conf becomes this one.
        volume_mounts {
          name       = "conf"
          mount_path = "/etc/datos"
        }
      }

      volumes {
        name = "state"
        gcs {
          bucket    = google_storage_bucket.loader_state.name
          read_only = false
          # The image runs the loader as uid 10001, which must own what it
          # writes; the journal is private to it, as on a disk.
          mount_options = ["uid=10001", "gid=10001", "file-mode=600", "dir-mode=700"]
        }
      }

      volumes {
        name = "conf"
        secret {
          secret = google_secret_manager_secret.loader_conf.secret_id
          items {
            version = google_secret_manager_secret_version.loader_conf.version
            path    = "loader.conf"
          }
        }
      }
    }
  }

  depends_on = [
    google_storage_bucket_iam_member.loader_keeps_journal,
    google_secret_manager_secret_iam_member.loader_reads_conf,
  ]
}

# ---------------------------------------------------------------- scheduler

# Cloud Scheduler starts the job through the Run Admin API, as an identity
# that may do nothing else.
resource "google_service_account" "scheduler" {
  account_id   = "${var.name}-scheduler"
  display_name = "${var.name}: Cloud Scheduler (starts the loader's job)"
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_loader" {
  name     = google_cloud_run_v2_job.loader.name
  location = google_cloud_run_v2_job.loader.location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The only scheduler of the subscription: BigQuery's 1,500 load jobs per
# table per day are shared by every runner. With bigquery_subscription the
# subscription loads itself and the schedule goes.
resource "google_cloud_scheduler_job" "loader" {
  count = local.loader_scheduled ? 1 : 0

  name             = "${var.name}-loader"
  region           = var.region
  description      = "datos ${var.name}: one datos-loader run"
  schedule         = var.loader_schedule
  time_zone        = var.loader_time_zone
  attempt_deadline = "60s"

  # A missed start is not retried: the next tick is minutes away.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.loader.name}:run"

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_loader]
}
