# What the release workflow (.github/workflows/release.yml) uses: the image
# repository, and identities it reaches through Workload Identity
# Federation. No key is made anywhere: GitHub's OIDC token for a run of
# github_repository is exchanged for short-lived Google credentials.

resource "google_artifact_registry_repository" "images" {
  repository_id = "datos"
  location      = var.region
  format        = "DOCKER"
  description   = "datos images: datos-httpd and datos-loader, deployed by digest."

  # A tag names one image for good: a release is never rewritten.
  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.apis]
}

resource "google_iam_workload_identity_pool" "github" {
  workload_identity_pool_id = "github"
  display_name              = "GitHub Actions"
  description               = "The workflows of ${var.github_repository}."

  depends_on = [google_project_service.apis]
}

resource "google_iam_workload_identity_pool_provider" "github" {
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = "github"
  display_name                       = "GitHub OIDC"

  attribute_mapping = {
    "google.subject"        = "assertion.sub"
    "attribute.repository"  = "assertion.repository"
    "attribute.ref"         = "assertion.ref"
    "attribute.environment" = "assertion.environment"
  }
  # Tokens of any other repository are refused outright.
  attribute_condition = "assertion.repository == \"${var.github_repository}\""

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

locals {
  wif_pool = google_iam_workload_identity_pool.github.name
  # GitHub's subject for a job that runs in an environment.
  plan_subject   = "principal://iam.googleapis.com/${local.wif_pool}/subject/repo:${var.github_repository}:environment:${var.github_plan_environment}"
  deploy_subject = "principal://iam.googleapis.com/${local.wif_pool}/subject/repo:${var.github_repository}:environment:${var.github_deploy_environment}"
}

# ---------------------------------------------------------------- push

resource "google_service_account" "ci_push" {
  account_id   = "datos-ci-push"
  display_name = "datos CI: pushes release images"
}

resource "google_service_account_iam_member" "ci_push_from_github" {
  service_account_id = google_service_account.ci_push.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${local.wif_pool}/attribute.repository/${var.github_repository}"
}

resource "google_artifact_registry_repository_iam_member" "ci_push_writes_images" {
  repository = google_artifact_registry_repository.images.name
  location   = google_artifact_registry_repository.images.location
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.ci_push.email}"
}

# ---------------------------------------------------------------- plan

resource "google_service_account" "ci_plan" {
  account_id   = "datos-ci-plan"
  display_name = "datos CI: terraform plan (reads the project)"
}

resource "google_service_account_iam_member" "ci_plan_from_github" {
  service_account_id = google_service_account.ci_plan.name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.plan_subject
}

resource "google_project_iam_member" "ci_plan_reads" {
  for_each = toset(["roles/viewer", "roles/iam.securityReviewer"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.ci_plan.email}"
}

# ---------------------------------------------------------------- deploy

resource "google_service_account" "ci_deploy" {
  account_id   = "datos-ci-deploy"
  display_name = "datos CI: terraform apply, smoke test, rollback"
}

# Only a job of the protected environment may act as the deployer.
resource "google_service_account_iam_member" "ci_deploy_from_github" {
  service_account_id = google_service_account.ci_deploy.name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.deploy_subject
}

resource "google_project_iam_member" "ci_deploy_administers" {
  for_each = toset(var.deployer_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.ci_deploy.email}"
}

# The state: the planner reads it (and takes the lock), the deployer writes it.
resource "google_storage_bucket_iam_member" "ci_state" {
  for_each = {
    plan   = google_service_account.ci_plan.email
    deploy = google_service_account.ci_deploy.email
  }

  bucket = var.state_bucket
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${each.value}"
}

resource "google_secret_manager_secret_iam_member" "ci_deploy_smoke" {
  count = var.smoke_credentials_secret == null ? 0 : 1

  secret_id = "projects/${var.project_id}/secrets/${var.smoke_credentials_secret}"
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.ci_deploy.email}"

  depends_on = [google_project_service.apis]
}
