# A whole callrec deployment in one `terraform apply`: the module with two lines of business,
# stage 2 against OCP's EU region, recordings to Infrequent Access after 30 days. Fill in the
# network, the certificate and OCP's egress ranges (terraform.tfvars), put the two secrets'
# values (docs/OPERATIONS.md), then apply.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "image" {
  description = "callrec's image, e.g. <account>.dkr.ecr.<region>.amazonaws.com/callrec@sha256:…"
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "private_subnet_ids" {
  type = list(string)
}

variable "public_subnet_ids" {
  type = list(string)
}

variable "certificate_arn" {
  type = string
}

variable "ocp_egress_cidrs" {
  description = "OCP's published egress ranges (its streaming side connects from them)."
  type        = list(string)
}

variable "name_prefix" {
  description = "Bucket names are global: a prefix of yours (e.g. the company's)."
  type        = string
}

variable "alarm_topic_arn" {
  type    = string
  default = null
}

module "callrec" {
  source = "../.."

  name  = "callrec"
  image = var.image

  table_name = "callrec"
  lines_of_business = {
    sales = { bucket = "${var.name_prefix}-callrec-sales" }
    care  = { bucket = "${var.name_prefix}-callrec-care" }
  }
  default_line_of_business = "care"
  routing_rules = [
    { line_of_business = "sales", application = "sales-*" },
  ]
  staging_bucket = "${var.name_prefix}-callrec-staging"
  recording_transitions = [
    { days = 30, storage_class = "STANDARD_IA" },
  ]

  ocp = { region = "eu1" }

  vpc_id                   = var.vpc_id
  task_subnet_ids          = var.private_subnet_ids
  load_balancer_subnet_ids = var.public_subnet_ids
  certificate_arn          = var.certificate_arn
  allowed_cidrs            = var.ocp_egress_cidrs

  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
  tags          = { service = "callrec" }
}

output "load_balancer_dns_name" {
  value = module.callrec.load_balancer_dns_name
}

output "buckets" {
  value = module.callrec.buckets
}

output "secrets" {
  value = {
    bearer_tokens = module.callrec.bearer_tokens_secret_arn
    ocp_token     = module.callrec.ocp_token_secret_arn
  }
}
