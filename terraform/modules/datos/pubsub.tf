resource "google_pubsub_topic" "datos" {
  name   = var.topic
  labels = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  name   = var.dead_letter_topic
  labels = var.labels
}

resource "google_pubsub_subscription" "loader" {
  name   = var.subscription
  topic  = google_pubsub_topic.datos.id
  labels = var.labels

  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention
  retain_acked_messages      = false

  # A subscription drained by a scheduled batch sees no pull between runs;
  # the default policy would delete it after 31 idle days.
  expiration_policy {
    ttl = ""
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  # When one loader run per interval no longer keeps up (docs/google-cloud.md,
  # "When ingestion outgrows one loader"), Pub/Sub writes the table itself:
  # the record's fields go to the columns of the same name, and a message
  # BigQuery refuses goes to the same dead-letter topic after
  # max_delivery_attempts. The metadata columns are written only when the
  # table has every one of them.
  dynamic "bigquery_config" {
    for_each = var.bigquery_subscription ? [1] : []
    content {
      table               = local.table_ref
      use_table_schema    = true
      write_metadata      = local.table_has_metadata
      drop_unknown_fields = false
    }
  }

  depends_on = [google_bigquery_table_iam_member.pubsub_writes_table]
}

resource "google_pubsub_subscription" "dead_letter" {
  name   = var.dead_letter_subscription
  topic  = google_pubsub_topic.dead_letter.id
  labels = var.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention

  expiration_policy {
    ttl = ""
  }
}

# The dead-letter policy works only when Pub/Sub's own service agent may
# publish to the dead-letter topic and acknowledge on the source
# subscription; without these, messages are redelivered forever instead.
resource "google_pubsub_topic_iam_member" "service_agent_publishes_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "service_agent_forwards_from_subscription" {
  subscription = google_pubsub_subscription.loader.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# A BigQuery subscription writes with Pub/Sub's service agent: it may edit
# the table, and only while the switch is on.
resource "google_bigquery_table_iam_member" "pubsub_writes_table" {
  count = var.bigquery_subscription ? 1 : 0

  dataset_id = google_bigquery_table.datos.dataset_id
  table_id   = google_bigquery_table.datos.table_id
  role       = "roles/bigquery.dataEditor"
  member     = local.pubsub_service_agent
}
