variable "project_id" {
  description = "Google Cloud project that holds the GKE cluster and the buckets"
  type        = string
}

variable "location" {
  description = "Bucket location (a region close to the GPU node pools, e.g. us-central1)"
  type        = string
  default     = "us-central1"
}

variable "bucket_prefix" {
  description = "Prefix of the bucket names (bucket names are global)"
  type        = string
}

variable "ray_namespace" {
  description = "Kubernetes namespace of the Ray pods (infra/k8s/namespaces.yaml)"
  type        = string
  default     = "edn"
}

variable "mlflow_namespace" {
  description = "Kubernetes namespace of the MLflow server"
  type        = string
  default     = "edn-mlflow"
}
