# One datos system: its table, its topics and subscriptions, its identities,
# the API on Cloud Run, the scheduled loader, the optional fleet tier, and
# the monitoring that watches them. The defaults are the programs' own
# defaults (conf/loader.conf.example, conf/datos.conf).

# ---------------------------------------------------------------- identity

variable "project_id" {
  description = "The Google Cloud project that holds the system's resources and runs (and pays for) its BigQuery jobs."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "A project id is 6 to 30 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "name" {
  description = "The system's name: the prefix of its service accounts, Cloud Run service and job, scheduler job, secrets, bucket, metrics and dashboards."
  type        = string
  default     = "datos"

  validation {
    # account_id "<name>-scheduler" must fit in 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", var.name))
    error_message = "A system name is 2 to 20 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "region" {
  description = "The region of the Cloud Run service and job, the scheduler, the fleet tier and the loader's bucket."
  type        = string
  default     = "southamerica-east1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "A region looks like southamerica-east1."
  }
}

variable "location" {
  description = "BigQuery location of the dataset (a region or a multi-region). The jobs of mod_datos and datos-loader run there."
  type        = string
  default     = "southamerica-east1"

  validation {
    condition     = can(regex("^([a-z]+-[a-z]+[0-9]|US|EU)$", var.location))
    error_message = "A BigQuery location is a region (southamerica-east1) or a multi-region (US, EU)."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = { app = "datos" }

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "Label keys and values are lowercase letters, digits, _ and -, at most 63 characters; keys start with a letter."
  }
}

# ---------------------------------------------------------------- data plane

variable "dataset_id" {
  description = "The dataset of the table (DatosTable / the loader's `table`, first part)."
  type        = string
  default     = "latam_dataset"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.dataset_id))
    error_message = "A dataset id is letters, digits and underscores."
  }
}

variable "table_id" {
  description = "The table served by mod_datos and loaded by datos-loader."
  type        = string
  default     = "datos"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.table_id))
    error_message = "A table id is letters, digits and underscores."
  }
}

variable "topic" {
  description = "The topic producers (and POST /datos, DatosTopic) publish records to."
  type        = string
  default     = "datos-topic"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.topic))
    error_message = "A Pub/Sub name is 3 to 255 characters, starting with a letter."
  }
}

variable "subscription" {
  description = "The subscription datos-loader drains (the loader's `subscription`), or that writes to BigQuery itself with bigquery_subscription."
  type        = string
  default     = "datos-subscription"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.subscription))
    error_message = "A Pub/Sub name is 3 to 255 characters, starting with a letter."
  }
}

variable "dead_letter_topic" {
  description = "Where invalid messages go, with a datos_error attribute (the loader's `dead_letter_topic`)."
  type        = string
  default     = "datos-dlq"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.dead_letter_topic))
    error_message = "A Pub/Sub name is 3 to 255 characters, starting with a letter."
  }
}

variable "dead_letter_subscription" {
  description = "A subscription on the dead-letter topic, to inspect rejected messages and for `datos-loader --redrive`."
  type        = string
  default     = "datos-dlq-subscription"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.dead_letter_subscription))
    error_message = "A Pub/Sub name is 3 to 255 characters, starting with a letter."
  }
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

  validation {
    condition     = can(regex("^[0-9]+s$", var.message_retention)) && try(tonumber(trimsuffix(var.message_retention, "s")) >= 600 && tonumber(trimsuffix(var.message_retention, "s")) <= 604800, false)
    error_message = "Pub/Sub keeps unacknowledged messages 600s to 604800s (7 days)."
  }
}

variable "dead_letter_retention" {
  description = "How long a dead-lettered message waits in the dead-letter subscription for someone to look at it."
  type        = string
  default     = "2678400s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention)) && try(tonumber(trimsuffix(var.dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention, "s")) <= 2678400, false)
    error_message = "A subscription keeps messages 600s to 2678400s (31 days)."
  }
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the table and of the Cloud Run service. Keep it on in production."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- the API

variable "api_image" {
  description = "The httpd+mod_datos image (docker/httpd.Dockerfile), by digest: REGION-docker.pkg.dev/PROJECT/REPOSITORY/datos-httpd@sha256:<64 hex>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$", var.api_image))
    error_message = "The image must be named by digest (...@sha256:<64 hex digits>), never by a tag that can move."
  }
}

variable "min_instances" {
  description = "Instances of the API kept running: at least 1, so that an instance with a warm cache always exists."
  type        = number
  default     = 1

  validation {
    condition     = var.min_instances >= 1 && var.min_instances <= 100 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances is a whole number from 1 to 100: 0 would let the last warm cache go."
  }
}

variable "max_instances" {
  description = "The most instances of the API Cloud Run may start."
  type        = number
  default     = 20

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances is a whole number from 1 to 1000."
  }
}

variable "concurrency" {
  description = "Requests one instance takes at once (Cloud Run's max_instance_request_concurrency). httpd's event MPM serves hundreds from memory."
  type        = number
  default     = 250

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000 && floor(var.concurrency) == var.concurrency
    error_message = "Cloud Run accepts a concurrency of 1 to 1000."
  }
}

variable "api_cpu" {
  description = "CPUs of one API instance."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.api_cpu)
    error_message = "api_cpu is 1, 2, 4, 6 or 8."
  }
}

variable "api_memory" {
  description = "Memory of one API instance."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.api_memory))
    error_message = "api_memory is a size such as 512Mi or 1Gi."
  }
}

variable "fresh_for" {
  description = "DatosFreshFor of the API (DATOS_FRESH_FOR): how long an answer is served without asking BigQuery."
  type        = string
  default     = "30s"

  validation {
    condition     = can(regex("^[0-9]+(ms|s|m|h)?$", var.fresh_for))
    error_message = "fresh_for is a duration such as 30s or 5m."
  }
}

variable "max_bytes_billed" {
  description = "DatosMaxBytesBilled of the API (DATOS_MAX_BYTES_BILLED): the most one query may bill, such as 1G, or off."
  type        = string
  default     = "1G"

  validation {
    condition     = var.max_bytes_billed == "off" || can(regex("^[0-9]+[KMGT]?$", var.max_bytes_billed))
    error_message = "max_bytes_billed is a size such as 10M or 1G, or off."
  }
}

variable "ingest_enabled" {
  description = "POST /datos (DatosIngest On): the API's service account may publish to the topic, and posting needs a user of the htpasswd file in ingest_htpasswd_secret."
  type        = bool
  default     = false
}

variable "ingest_htpasswd_secret" {
  description = "With ingest_enabled: the Secret Manager secret (its id, in this project) that holds the htpasswd file of the users who may POST. You create it and its versions (htpasswd -nB USER), so no password passes through terraform."
  type        = string
  default     = null

  validation {
    condition     = var.ingest_htpasswd_secret == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.ingest_htpasswd_secret))
    error_message = "A secret id is 1 to 255 letters, digits, _ and -."
  }

  validation {
    condition     = !var.ingest_enabled || var.ingest_htpasswd_secret != null
    error_message = "ingest_enabled needs ingest_htpasswd_secret: POST /datos is never open to anyone."
  }
}

variable "public_access" {
  description = "How clients reach the API: \"none\" (only identities granted roles/run.invoker, with an ID token), \"run_invoker\" (the Cloud Run URL, open to allUsers) or \"load_balancer\" (an external HTTPS load balancer with Cloud Armor in front; Cloud Run takes traffic only from it)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "run_invoker", "load_balancer"], var.public_access)
    error_message = "public_access is none, run_invoker or load_balancer."
  }
}

variable "domain" {
  description = "With public_access = \"load_balancer\": the DNS name clients use; Google manages its certificate once the name points at the load balancer's address."
  type        = string
  default     = null

  validation {
    condition     = var.domain == null || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain is a DNS name such as datos.example.com."
  }

  validation {
    condition     = var.public_access != "load_balancer" || var.domain != null
    error_message = "public_access = \"load_balancer\" needs domain, the name its certificate is for."
  }
}

variable "rate_limit_per_minute" {
  description = "With the load balancer: requests one client IP may make per minute before Cloud Armor answers 429."
  type        = number
  default     = 600

  validation {
    condition     = var.rate_limit_per_minute >= 1 && var.rate_limit_per_minute <= 1000000
    error_message = "rate_limit_per_minute is 1 to 1,000,000."
  }
}

# ---------------------------------------------------------------- fleet tier

variable "fleet_cache" {
  description = "Memorystore for Redis as the cache every API instance shares (DatosCache redis:HOST:PORT), with its entries signed by a key from Secret Manager (DatosCacheSecretFile). Off: each instance caches for itself (shmcb), fine for a small system."
  type        = bool
  default     = false
}

variable "network" {
  description = "With fleet_cache: the VPC network (its id) that Memorystore is reached on through Direct VPC egress."
  type        = string
  default     = null

  validation {
    condition     = !var.fleet_cache || var.network != null
    error_message = "fleet_cache needs network: Memorystore is reached on a VPC network."
  }
}

variable "subnetwork" {
  description = "With fleet_cache: the subnetwork (its id) the API's instances take their addresses from (Direct VPC egress)."
  type        = string
  default     = null

  validation {
    condition     = !var.fleet_cache || var.subnetwork != null
    error_message = "fleet_cache needs subnetwork: Direct VPC egress gives the instances addresses in it."
  }
}

variable "redis_tier" {
  description = "With fleet_cache: BASIC (one node) or STANDARD_HA (a replica that takes over)."
  type        = string
  default     = "BASIC"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier is BASIC or STANDARD_HA."
  }
}

variable "redis_memory_gb" {
  description = "With fleet_cache: Memorystore's size. One answer is a few hundred KB; 1 GB is the smallest there is."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_memory_gb >= 1 && var.redis_memory_gb <= 300
    error_message = "Memorystore for Redis takes 1 to 300 GB."
  }
}

# ---------------------------------------------------------------- the loader

variable "loader_image" {
  description = "The datos-loader image (docker/loader.Dockerfile), by digest: REGION-docker.pkg.dev/PROJECT/REPOSITORY/datos-loader@sha256:<64 hex>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$", var.loader_image))
    error_message = "The image must be named by digest (...@sha256:<64 hex digits>), never by a tag that can move."
  }
}

variable "loader_schedule" {
  description = "When Cloud Scheduler starts the loader (cron syntax, in loader_time_zone). Every 5 minutes is 288 runs and at most 288 load jobs a day for a backlog under batch_max_rows, against BigQuery's 1,500 per table."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", var.loader_schedule)) == 5
    error_message = "loader_schedule is a five-field cron expression."
  }
}

variable "loader_interval_minutes" {
  description = "The minutes between two runs of loader_schedule: the alert for a missing run waits three of them."
  type        = number
  default     = 5

  validation {
    condition     = var.loader_interval_minutes >= 1 && var.loader_interval_minutes <= 480
    error_message = "loader_interval_minutes is 1 to 480."
  }
}

variable "loader_time_zone" {
  description = "The time zone of loader_schedule (a tz database name)."
  type        = string
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.loader_time_zone))
    error_message = "loader_time_zone is a tz database name such as Etc/UTC or America/Sao_Paulo."
  }
}

variable "loader_max_seconds" {
  description = "The loader's max_seconds: how long one run pulls. Below the interval, so that a run is normally over before the next one starts."
  type        = number
  default     = 240

  validation {
    condition     = var.loader_max_seconds >= 10 && var.loader_max_seconds <= 3600
    error_message = "loader_max_seconds is 10 to 3600."
  }
}

variable "loader_job_timeout" {
  description = "The loader's job_timeout, in seconds: how long the load job of the batch in flight may take once pulling stops."
  type        = number
  default     = 600

  validation {
    condition     = var.loader_job_timeout >= 60 && var.loader_job_timeout <= 3600
    error_message = "loader_job_timeout is 60 to 3600."
  }
}

variable "loader_memory" {
  description = "Memory of the loader's task: a full 100 MB batch of DESIGN.md's mix peaked at 320 MiB (docs/benchmarks.md)."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.loader_memory))
    error_message = "loader_memory is a size such as 512Mi or 1Gi."
  }
}

# ---------------------------------------------------------------- the switch

variable "bigquery_subscription" {
  description = "Make the subscription a BigQuery subscription that writes the table itself (use_table_schema, the same dead-letter topic); the loader's schedule is then removed. For ingestion past what one loader run every interval keeps up with (docs/google-cloud.md)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- monitoring

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (ids: projects/P/notificationChannels/N) every alert of this system notifies."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "A notification channel is projects/PROJECT/notificationChannels/NUMBER."
  }
}

variable "backlog_threshold" {
  description = "Alert when the subscription holds more undelivered messages than this."
  type        = number
  default     = 100000

  validation {
    condition     = var.backlog_threshold > 0
    error_message = "backlog_threshold is positive."
  }
}

variable "oldest_unacked_threshold_seconds" {
  description = "Alert when the oldest unacknowledged message is older than this (three loader intervals by default)."
  type        = number
  default     = 900

  validation {
    condition     = var.oldest_unacked_threshold_seconds >= 60
    error_message = "oldest_unacked_threshold_seconds is at least 60."
  }
}

variable "latency_threshold_ms" {
  description = "Alert when the API's 95th percentile latency is above this, in milliseconds."
  type        = number
  default     = 1000

  validation {
    condition     = var.latency_threshold_ms > 0
    error_message = "latency_threshold_ms is positive."
  }
}

variable "error_ratio_threshold" {
  description = "Alert when this share of the API's answers are 5xx."
  type        = number
  default     = 0.02

  validation {
    condition     = var.error_ratio_threshold > 0 && var.error_ratio_threshold < 1
    error_message = "error_ratio_threshold is a fraction between 0 and 1."
  }
}

variable "slo_availability_goal" {
  description = "Share of the API's requests that must not be 5xx, over 28 days."
  type        = number
  default     = 0.999

  validation {
    condition     = var.slo_availability_goal > 0 && var.slo_availability_goal < 1
    error_message = "An SLO goal is between 0 and 1."
  }
}

variable "slo_latency_goal" {
  description = "Share of the API's requests that must be answered under slo_latency_ms, over 28 days."
  type        = number
  default     = 0.99

  validation {
    condition     = var.slo_latency_goal > 0 && var.slo_latency_goal < 1
    error_message = "An SLO goal is between 0 and 1."
  }
}

variable "slo_latency_ms" {
  description = "The latency SLO's bound, in milliseconds."
  type        = number
  default     = 300

  validation {
    condition     = var.slo_latency_ms > 0
    error_message = "slo_latency_ms is positive."
  }
}

variable "slo_freshness_goal" {
  description = "Share of the minutes in which the oldest unacknowledged message is younger than slo_freshness_seconds, over 28 days."
  type        = number
  default     = 0.99

  validation {
    condition     = var.slo_freshness_goal > 0 && var.slo_freshness_goal < 1
    error_message = "An SLO goal is between 0 and 1."
  }
}

variable "slo_freshness_seconds" {
  description = "The ingestion-freshness SLO's bound on the age of the oldest unacknowledged message."
  type        = number
  default     = 600

  validation {
    condition     = var.slo_freshness_seconds >= 60
    error_message = "slo_freshness_seconds is at least 60."
  }
}
