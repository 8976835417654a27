output "systems" {
  description = "Per system: the API's URL and service, its newest revision, the loader's job and image, how it is reached, whether POST /datos is on, the load balancer's address."
  value = {
    for name, s in module.system : name => {
      api_url                = s.api_url
      api_service            = s.api_service
      api_revision           = s.api_revision
      loader_job             = s.loader_job
      loader_image           = s.loader_image
      public_access          = s.public_access
      ingest_enabled         = s.ingest_enabled
      table                  = s.table
      reader_service_account = s.reader_service_account
      loader_service_account = s.loader_service_account
      load_balancer_address  = s.load_balancer_address
    }
  }
}

output "image_repository" {
  description = "Where the release workflow pushes the images: REGION-docker.pkg.dev/PROJECT/datos."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "workload_identity_provider" {
  description = "The release workflow's GCP_WORKLOAD_IDENTITY_PROVIDER variable."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "ci_service_accounts" {
  description = "The release workflow's GCP_PUSH_SA, GCP_PLAN_SA and GCP_DEPLOY_SA variables."
  value = {
    push   = google_service_account.ci_push.email
    plan   = google_service_account.ci_plan.email
    deploy = google_service_account.ci_deploy.email
  }
}
