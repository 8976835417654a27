variable "project_id" {
  description = "The Google Cloud project that holds the table, the topics and the service accounts, and runs (and pays for) the BigQuery jobs."
  type        = string
}

variable "region" {
  description = "Default region of the provider."
  type        = string
  default     = "southamerica-east1"
}

variable "location" {
  description = "BigQuery location of the dataset (a region or a multi-region). The jobs of mod_datos and datos-loader run there."
  type        = string
  default     = "southamerica-east1"
}

variable "dataset_id" {
  description = "The dataset of the table (DatosTable / the loader's `table`, first part)."
  type        = string
  default     = "latam_dataset"
}

variable "table_id" {
  description = "The table served by mod_datos and loaded by datos-loader."
  type        = string
  default     = "datos"
}

variable "topic" {
  description = "The topic producers (and POST /datos, DatosTopic) publish records to."
  type        = string
  default     = "datos-topic"
}

variable "subscription" {
  description = "The subscription datos-loader drains (the loader's `subscription`)."
  type        = string
  default     = "datos-subscription"
}

variable "dead_letter_topic" {
  description = "Where invalid messages go, with a datos_error attribute (the loader's `dead_letter_topic`)."
  type        = string
  default     = "datos-dlq"
}

variable "dead_letter_subscription" {
  description = "A subscription on the dead-letter topic, to inspect rejected messages and for `datos-loader --redrive`."
  type        = string
  default     = "datos-dlq-subscription"
}

variable "ack_deadline_seconds" {
  description = "The subscription's ack deadline. datos-loader extends its leases itself until each batch is committed."
  type        = number
  default     = 60

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "Pub/Sub accepts an ack deadline of 10 to 600 seconds."
  }
}

variable "max_delivery_attempts" {
  description = "The subscription's dead-letter policy: a last resort for a message the loader cannot process at all. The loader dead-letters invalid messages itself, at once."
  type        = number
  default     = 100

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "message_retention" {
  description = "How long an unacknowledged message waits in the subscription: the longest loader outage that loses nothing."
  type        = string
  default     = "604800s"
}

variable "dead_letter_retention" {
  description = "How long a dead-lettered message waits in the dead-letter subscription for someone to look at it."
  type        = string
  default     = "2678400s"
}

variable "ingest_enabled" {
  description = "Let mod_datos's service account publish to the topic (DatosIngest On, POST /datos)."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the table. Keep it on in production."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = { app = "datos" }
}
