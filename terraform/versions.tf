terraform {
  required_version = ">= 1.11"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.23, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7, < 4.0"
    }
  }

  # The state lives in a Cloud Storage bucket, never in the repository:
  #   terraform init -backend-config="bucket=BUCKET"
  # (docs/google-cloud.md, "First deployment").
  backend "gcs" {
    prefix = "datos"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
