resource "google_bigquery_dataset" "datos" {
  dataset_id  = var.dataset_id
  location    = var.location
  description = "datos: records loaded by datos-loader, served by mod_datos."
  labels      = var.labels
}

resource "google_bigquery_table" "datos" {
  dataset_id  = google_bigquery_dataset.datos.dataset_id
  table_id    = var.table_id
  description = "One row per loaded record; /datos and datos_latest show the newest row of each id."
  labels      = var.labels

  # The same file the test suite creates the emulator's table from.
  schema = file("${path.module}/datos-schema.json")

  # mod_datos asks for the last DatosLookback days (7 by default) and then
  # only from its watermark, so a query reads a few daily partitions.
  time_partitioning {
    type  = "DAY"
    field = "timestamp"
  }

  clustering = ["id"]

  deletion_protection = var.deletion_protection
}

resource "google_bigquery_table" "datos_latest" {
  dataset_id  = google_bigquery_dataset.datos.dataset_id
  table_id    = "${var.table_id}_latest"
  description = "The newest row of each id, by the rule mod_datos serves."
  labels      = var.labels

  view {
    query = templatefile("${path.module}/datos_latest.sql", {
      project = var.project_id
      dataset = var.dataset_id
      table   = google_bigquery_table.datos.table_id
    })
    use_legacy_sql = false
  }

  deletion_protection = false
}
