variable "name" {
  description = "Prefix of every resource's name (cluster, services, roles, log group, alarms)."
  type        = string
  default     = "callrec"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "2-31 of a-z 0-9 -, starting with a letter."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

# --- State ---------------------------------------------------------------------------------

variable "table_name" {
  description = "The DynamoDB table of calls and export jobs (`state.dynamodb_table`)."
  type        = string
  default     = "callrec"
}

variable "deletion_protection" {
  description = "DynamoDB deletion protection, and the load balancer's. Keep it on in production."
  type        = bool
  default     = true
}

# --- Buckets -------------------------------------------------------------------------------

variable "lines_of_business" {
  description = <<-EOT
    One S3 bucket per line of business: name => { bucket, key_template (optional, callrec's
    default when null), storage_class (optional: the class objects are written in) }.
  EOT
  type = map(object({
    bucket        = string
    key_template  = optional(string)
    storage_class = optional(string)
  }))
  validation {
    condition     = length(var.lines_of_business) > 0
    error_message = "At least one line of business."
  }
}

variable "default_line_of_business" {
  description = "Where a call no routing rule matches goes (`routing.default`): a key of lines_of_business."
  type        = string
}

variable "routing_rules" {
  description = "callrec's `routing.rules`, in order: the first rule whose every given field matches routes the call."
  type = list(object({
    line_of_business = string
    group_id         = optional(string)
    application      = optional(string)
    application_type = optional(string)
    ivr_channel      = optional(string)
    direction        = optional(string)
  }))
  default = []
}

variable "staging_bucket" {
  description = "The staging bucket: raw uploads until stored, `conflicts/` and `facts/` kept for review."
  type        = string
}

variable "staging_prefix" {
  description = "Prefix of raw uploads in the staging bucket (`routing.staging.prefix`)."
  type        = string
  default     = "staging"
}

variable "staging_expiry_days" {
  description = "Raw uploads left in staging (a call never stored) expire after this many days; `conflicts/` and `facts/` are kept."
  type        = number
  default     = 14
}

variable "kms_key_arn" {
  description = "A customer managed KMS key for the buckets, the table, the secrets and the logs. Null: AWS managed keys (aws/s3, aws/dynamodb, aws/secretsmanager)."
  type        = string
  default     = null
}

variable "recording_transitions" {
  description = "Lifecycle transitions of the recordings in line-of-business buckets (e.g. [{ days = 30, storage_class = \"STANDARD_IA\" }, { days = 180, storage_class = \"GLACIER_IR\" }])."
  type = list(object({
    days          = number
    storage_class = string
  }))
  default = []
}

variable "object_lock" {
  description = "S3 Object Lock (WORM) default retention for recordings: { mode = GOVERNANCE or COMPLIANCE, days }. Null: off. Only at bucket creation; COMPLIANCE cannot be shortened by anyone."
  type = object({
    mode = string
    days = number
  })
  default = null
  validation {
    condition     = var.object_lock == null || contains(["GOVERNANCE", "COMPLIANCE"], try(var.object_lock.mode, ""))
    error_message = "mode: GOVERNANCE or COMPLIANCE."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete buckets that hold objects. Only for test stacks."
  type        = bool
  default     = false
}

variable "access_log_bucket" {
  description = "A bucket for S3 server access logs of every bucket (prefix `s3/{bucket}/`). Null: off."
  type        = string
  default     = null
}

# --- Service -------------------------------------------------------------------------------

variable "image" {
  description = "callrec's container image (this repository's Dockerfile), by digest in production."
  type        = string
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (Graviton): the image must hold a binary for it."
  type        = string
  default     = "X86_64"
  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "X86_64 or ARM64."
  }
}

variable "cpu" {
  description = "Fargate CPU units of a `callrec serve` task (1024 = 1 vCPU): the engine uses one thread per vCPU."
  type        = number
  default     = 2048
}

variable "memory" {
  description = "Fargate memory of a `callrec serve` task, MiB: leave server.engine_memory_mb (set to half of it) and the queue room."
  type        = number
  default     = 4096
}

variable "ephemeral_storage_gib" {
  description = "Fargate ephemeral storage (21-200 GiB): uploads are spooled there while checksummed."
  type        = number
  default     = 40
}

variable "desired_count" {
  description = "`callrec serve` tasks; autoscaling moves between min_count and max_count."
  type        = number
  default     = 2
}

variable "min_count" {
  type    = number
  default = 2
}

variable "max_count" {
  type    = number
  default = 10
}

variable "autoscaling_cpu_percent" {
  description = "Target average CPU of the serve tasks."
  type        = number
  default     = 60
}

variable "autoscaling_requests_per_target" {
  description = "Target ALB requests per task per minute."
  type        = number
  default     = 600
}

variable "reconcile_service" {
  description = "Run stage 2 in its own `callrec reconcile` service (one task) instead of inside the serve tasks."
  type        = bool
  default     = false
}

variable "extra_environment" {
  description = "More of callrec's configuration as CALLREC_{SECTION}__{KEY} variables (they override what the module writes): server limits, reconcile tuning. Never secrets."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : can(regex("^CALLREC_[A-Z_]+$", k))])
    error_message = "CALLREC_* variable names."
  }
}

variable "ocp" {
  description = "OCP's Exports API for stage 2: { region (eu1, us1, …) or base_url, default_group }. Null: stage 1 only."
  type = object({
    region        = optional(string)
    base_url      = optional(string)
    default_group = optional(string)
  })
  default = null
}

variable "adot_image" {
  description = "The AWS Distro for OpenTelemetry collector image: the sidecar that scrapes /metrics into CloudWatch."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.1"
}

variable "ecr_repository_arn" {
  description = "The ECR repository of the image, for the execution role's pull permission. Null: the image is public."
  type        = string
  default     = null
}

# --- Network -------------------------------------------------------------------------------

variable "vpc_id" {
  type = string
}

variable "task_subnet_ids" {
  description = "Private subnets of the tasks (with a NAT gateway or VPC endpoints for AWS and OCP)."
  type        = list(string)
}

variable "load_balancer_subnet_ids" {
  description = "Subnets of the load balancer (public ones when OCP reaches it over the internet)."
  type        = list(string)
}

variable "internal_load_balancer" {
  description = "An internal load balancer (OCP reaches it through a private link or VPN)."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener OCP streams to."
  type        = string
}

variable "allowed_cidrs" {
  description = "Who may reach the listener: OCP's egress ranges."
  type        = list(string)
}

variable "web_acl_arn" {
  description = "A WAFv2 web ACL (regional) to put in front of the load balancer. Null: none (the listener takes only allowed_cidrs, and every write needs a bearer token)."
  type        = string
  default     = null
}

variable "load_balancer_access_logs_bucket" {
  description = "A bucket for the load balancer's access logs. Null: off."
  type        = string
  default     = null
}

# --- Operations ----------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Days callrec's logs are kept (a call's history is in them)."
  type        = number
  default     = 365
}

variable "alarm_actions" {
  description = "SNS topics (or other actions) every alarm notifies, in alarm and back to OK."
  type        = list(string)
  default     = []
}

variable "oldest_unstored_alarm_seconds" {
  description = "Alarm when the oldest call received and not stored is older than this."
  type        = number
  default     = 3600
}

variable "error_rate_alarm_percent" {
  description = "Alarm when this share of requests to the service answer 5xx over 5 minutes."
  type        = number
  default     = 5
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of callrec's metrics."
  type        = string
  default     = "callrec"
}
