# Buckets and workload identity for edn on GKE: Google service accounts for the Ray pods and the
# MLflow server, bucket roles, and the bindings that let the Kubernetes service accounts of
# infra/k8s/serviceaccounts.yaml act as them. No service-account key is created.
# The GKE cluster itself (workload identity enabled, GPU node pools) is assumed to exist.
terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

provider "google" {
  project = var.project_id
}

locals {
  # data: videos, datasets, configs, catalogs; checkpoints: Ray Train storage_path;
  # renders: output videos; models: OpenPose / VGG19 / LPIPS weights; mlflow: artifacts.
  ray_buckets = toset(["data", "checkpoints", "renders", "models"])
}

resource "google_storage_bucket" "ray" {
  for_each                    = local.ray_buckets
  name                        = "${var.bucket_prefix}-edn-${each.key}"
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

resource "google_storage_bucket" "mlflow" {
  name                        = "${var.bucket_prefix}-edn-mlflow"
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

resource "google_service_account" "ray" {
  account_id   = "edn-ray"
  display_name = "edn Ray head and workers"
}

resource "google_service_account" "mlflow" {
  account_id   = "edn-mlflow"
  display_name = "edn MLflow tracking server"
}

# Ray pods read and write their buckets (objectAdmin: checkpoints are overwritten and pruned).
resource "google_storage_bucket_iam_member" "ray" {
  for_each = local.ray_buckets
  bucket   = google_storage_bucket.ray[each.key].name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.ray.email}"
}

# Only the MLflow server touches artifacts (--serve-artifacts proxies every client).
resource "google_storage_bucket_iam_member" "mlflow" {
  bucket = google_storage_bucket.mlflow.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.mlflow.email}"
}

resource "google_service_account_iam_member" "ray_workload_identity" {
  service_account_id = google_service_account.ray.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.ray_namespace}/edn-ray]"
}

resource "google_service_account_iam_member" "mlflow_workload_identity" {
  service_account_id = google_service_account.mlflow.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.mlflow_namespace}/mlflow]"
}

output "ray_service_account" {
  value = google_service_account.ray.email
}

output "mlflow_service_account" {
  value = google_service_account.mlflow.email
}

output "buckets" {
  value = merge({ for k, b in google_storage_bucket.ray : k => "gs://${b.name}" },
  { mlflow = "gs://${google_storage_bucket.mlflow.name}" })
}
