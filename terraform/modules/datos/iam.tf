# mod_datos reads the table: tables.get once per process, then jobs.query.
resource "google_service_account" "reader" {
  account_id   = "${var.name}-reader"
  display_name = "${var.name}: mod_datos (reads the table, publishes POST /datos)"
}

# datos-loader drains the subscription and appends to the table with load
# jobs; it publishes invalid messages to the dead-letter topic.
resource "google_service_account" "loader" {
  account_id   = "${var.name}-loader"
  display_name = "${var.name}: datos-loader (drains Pub/Sub into BigQuery load jobs)"
}

# Jobs (queries, load jobs) run in the project; data access is granted on
# the table alone.
resource "google_project_iam_member" "job_user" {
  for_each = {
    reader = "serviceAccount:${google_service_account.reader.email}"
    loader = "serviceAccount:${google_service_account.loader.email}"
  }

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = each.value
}

resource "google_bigquery_table_iam_member" "reader_views_table" {
  dataset_id = google_bigquery_table.datos.dataset_id
  table_id   = google_bigquery_table.datos.table_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.reader.email}"
}

resource "google_bigquery_table_iam_member" "loader_edits_table" {
  dataset_id = google_bigquery_table.datos.dataset_id
  table_id   = google_bigquery_table.datos.table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.loader.email}"
}

resource "google_pubsub_subscription_iam_member" "loader_drains_subscription" {
  subscription = google_pubsub_subscription.loader.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.loader.email}"
}

resource "google_pubsub_topic_iam_member" "loader_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.loader.email}"
}

# datos-loader --redrive: read the dead-letter subscription and put the
# messages the subscription's own policy forwarded back on the topic.
resource "google_pubsub_subscription_iam_member" "loader_redrives_dead_letters" {
  subscription = google_pubsub_subscription.dead_letter.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.loader.email}"
}

resource "google_pubsub_topic_iam_member" "loader_republishes" {
  topic  = google_pubsub_topic.datos.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.loader.email}"
}

# POST /datos (DatosIngest On) publishes with mod_datos's identity.
resource "google_pubsub_topic_iam_member" "reader_publishes_ingested" {
  count = var.ingest_enabled ? 1 : 0

  topic  = google_pubsub_topic.datos.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.reader.email}"
}
