variable "project_id" {
  description = "The Google Cloud project that holds every system, the images and the CI/CD identities."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "A project id is 6 to 30 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "The region of the Cloud Run services and jobs, the schedulers, the fleet tiers, the buckets and the image repository."
  type        = string
  default     = "southamerica-east1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "A region looks like southamerica-east1."
  }
}

variable "location" {
  description = "BigQuery location of every system's dataset (a region or a multi-region)."
  type        = string
  default     = "southamerica-east1"

  validation {
    condition     = can(regex("^([a-z]+-[a-z]+[0-9]|US|EU)$", var.location))
    error_message = "A BigQuery location is a region (southamerica-east1) or a multi-region (US, EU)."
  }
}

variable "api_image" {
  description = "The httpd+mod_datos image every system runs, by digest (the release workflow passes the one it pushed)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$", var.api_image))
    error_message = "The image must be named by digest (...@sha256:<64 hex digits>)."
  }
}

variable "loader_image" {
  description = "The datos-loader image every system runs, by digest."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$", var.loader_image))
    error_message = "The image must be named by digest (...@sha256:<64 hex digits>)."
  }
}

variable "systems" {
  description = "The datos systems, by name (2 to 20 lowercase letters, digits and hyphens). Each gets its own dataset, table, topics, subscriptions, identities, API, loader and monitoring; its Pub/Sub names are NAME-topic, NAME-subscription, NAME-dlq and NAME-dlq-subscription, its dataset dataset_id (NAME with _ for -, unless given)."
  type = map(object({
    dataset_id              = optional(string)
    table_id                = optional(string, "datos")
    public_access           = optional(string, "none")
    domain                  = optional(string)
    rate_limit_per_minute   = optional(number, 600)
    ingest_enabled          = optional(bool, false)
    ingest_htpasswd_secret  = optional(string)
    fleet_cache             = optional(bool, false)
    redis_tier              = optional(string, "BASIC")
    min_instances           = optional(number, 1)
    max_instances           = optional(number, 20)
    concurrency             = optional(number, 250)
    fresh_for               = optional(string, "30s")
    max_bytes_billed        = optional(string, "1G")
    bigquery_subscription   = optional(bool, false)
    loader_schedule         = optional(string, "*/5 * * * *")
    loader_interval_minutes = optional(number, 5)
    deletion_protection     = optional(bool, true)
  }))

  validation {
    condition     = length(var.systems) >= 1 && alltrue([for k in keys(var.systems) : can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", k))])
    error_message = "At least one system; each name is 2 to 20 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/N) that every alert notifies. Create them in the console or with gcloud; none is hard-coded here."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "A notification channel is projects/PROJECT/notificationChannels/NUMBER."
  }
}

variable "subnet_cidr" {
  description = "The range of the subnetwork the API's instances take their addresses from when a system has fleet_cache (Direct VPC egress): at least a /26, and twice the instances at most ever running."
  type        = string
  default     = "10.8.0.0/20"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && tonumber(split("/", var.subnet_cidr)[1]) <= 26
    error_message = "subnet_cidr is an IPv4 range of /26 or larger."
  }
}

# ---------------------------------------------------------------- CI/CD

variable "github_repository" {
  description = "The GitHub repository (OWNER/NAME) whose workflows may deploy: the only one Workload Identity Federation trusts."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository is OWNER/NAME."
  }
}

variable "github_plan_environment" {
  description = "The GitHub environment of the release workflow's plan job: its identity may read the project, not change it."
  type        = string
  default     = "plan"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,255}$", var.github_plan_environment))
    error_message = "A GitHub environment name is letters, digits, _, . and -."
  }
}

variable "github_deploy_environment" {
  description = "The protected GitHub environment (with required reviewers) of the release workflow's apply job: the only subject that may act as the deployer."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,255}$", var.github_deploy_environment))
    error_message = "A GitHub environment name is letters, digits, _, . and -."
  }
}

variable "state_bucket" {
  description = "The Cloud Storage bucket of terraform's state (made once by hand, docs/google-cloud.md): the CI identities get access to it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.state_bucket))
    error_message = "A bucket name is 3 to 63 lowercase letters, digits, dots, _ and -."
  }
}

variable "smoke_credentials_secret" {
  description = "Optional: a Secret Manager secret holding USER:PASSWORD of a user in the systems' htpasswd files, that the release workflow's smoke test posts one record with. Null: the smoke test checks that POST /datos refuses a request without credentials."
  type        = string
  default     = null

  validation {
    condition     = var.smoke_credentials_secret == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.smoke_credentials_secret))
    error_message = "A secret id is 1 to 255 letters, digits, _ and -."
  }
}

variable "deployer_roles" {
  description = "The project roles of the deployer (terraform apply in the protected environment): administration of what this configuration manages, and nothing broader."
  type        = list(string)
  default = [
    "roles/artifactregistry.admin",
    "roles/bigquery.admin",
    "roles/cloudscheduler.admin",
    "roles/compute.loadBalancerAdmin",
    "roles/compute.networkAdmin",
    "roles/compute.securityAdmin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/iam.workloadIdentityPoolAdmin",
    "roles/logging.configWriter",
    "roles/monitoring.editor",
    "roles/pubsub.admin",
    "roles/redis.admin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/run.admin",
    "roles/secretmanager.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
  ]

  validation {
    condition     = length(setintersection(var.deployer_roles, ["roles/owner", "roles/editor"])) == 0
    error_message = "The deployer never gets roles/owner or roles/editor."
  }
}
