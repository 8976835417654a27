terraform {
  # 1.11: write-only arguments (secret_data_wo), so the fleet tier's key
  # never enters terraform's state.
  required_version = ">= 1.11"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.23: google_secret_manager_secret_version.secret_data_wo.
      version = ">= 6.23, < 8.0"
    }
    random = {
      source = "hashicorp/random"
      # 3.7: the ephemeral random_password.
      version = ">= 3.7, < 4.0"
    }
  }
}
