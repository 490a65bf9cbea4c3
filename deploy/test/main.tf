# deploy/test.sh's root: the module applied to the AWS emulator (moto) on loopback, with a
# customer KMS key and a self-signed certificate made here, in the emulator's default VPC.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

variable "endpoint" {
  description = "The emulator's URL (http://127.0.0.1:PORT)."
  type        = string
}

variable "image" {
  type = string
}

variable "certificate_file" {
  type = string
}

variable "private_key_file" {
  type = string
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {
    acm                    = var.endpoint
    applicationautoscaling = var.endpoint
    cloudwatch             = var.endpoint
    dynamodb               = var.endpoint
    ec2                    = var.endpoint
    ecs                    = var.endpoint
    elbv2                  = var.endpoint
    iam                    = var.endpoint
    kms                    = var.endpoint
    logs                   = var.endpoint
    s3                     = var.endpoint
    secretsmanager         = var.endpoint
    sts                    = var.endpoint
  }
}

data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
}

resource "aws_acm_certificate" "test" {
  certificate_body = file(var.certificate_file)
  private_key      = file(var.private_key_file)
}

resource "aws_kms_key" "test" {
  description             = "callrec deploy test"
  deletion_window_in_days = 7
  enable_key_rotation     = true
}

module "callrec" {
  source = "../terraform"

  name                = "callrec-ci"
  image               = var.image
  table_name          = "callrec-ci"
  deletion_protection = false
  lines_of_business = {
    sales = { bucket = "ci-callrec-sales" }
    care  = { bucket = "ci-callrec-care" }
  }
  default_line_of_business = "care"
  routing_rules            = [{ line_of_business = "sales", application = "sales-*" }]
  staging_bucket           = "ci-callrec-staging"
  staging_expiry_days      = 7
  kms_key_arn              = aws_kms_key.test.arn
  recording_transitions    = [{ days = 30, storage_class = "STANDARD_IA" }]
  force_destroy_buckets    = true

  vpc_id                   = data.aws_vpc.default.id
  task_subnet_ids          = data.aws_subnets.default.ids
  load_balancer_subnet_ids = data.aws_subnets.default.ids
  certificate_arn          = aws_acm_certificate.test.arn
  allowed_cidrs            = ["10.0.0.0/8"]
}

output "config_toml" {
  value = module.callrec.config_toml
}

output "buckets" {
  value = module.callrec.buckets
}

output "table_name" {
  value = module.callrec.table_name
}

output "kms_key_arn" {
  value = aws_kms_key.test.arn
}

output "task_role_arn" {
  value = module.callrec.task_role_arn
}
