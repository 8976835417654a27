resource "google_pubsub_topic" "datos" {
  name   = var.topic
  labels = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  name   = var.dead_letter_topic
  labels = var.labels

  depends_on = [google_project_service.apis]
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
