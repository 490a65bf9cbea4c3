output "table_name" {
  value = aws_dynamodb_table.calls.name
}

output "table_arn" {
  value = aws_dynamodb_table.calls.arn
}

output "buckets" {
  description = "Line of business => bucket, and `staging`."
  value       = merge(local.recording_buckets, { staging = aws_s3_bucket.this["staging"].id })
}

output "task_role_arn" {
  value = aws_iam_role.task.arn
}

output "execution_role_arn" {
  value = aws_iam_role.execution.arn
}

output "cluster_name" {
  value = aws_ecs_cluster.this.name
}

output "serve_service_name" {
  value = aws_ecs_service.serve.name
}

output "backfill_task_definition_arn" {
  description = "Run it as a one-off task with the backfill's arguments as the command (docs/OPERATIONS.md)."
  value       = try(aws_ecs_task_definition.this["backfill"].arn, null)
}

output "load_balancer_dns_name" {
  description = "Point OCP's streaming at https://<a name of yours for this>/ (the certificate's name)."
  value       = aws_lb.this.dns_name
}

output "bearer_tokens_secret_arn" {
  value = aws_secretsmanager_secret.bearer_tokens.arn
}

output "ocp_token_secret_arn" {
  value = try(aws_secretsmanager_secret.ocp_token[0].arn, null)
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.callrec.name
}

output "config_toml" {
  description = "The configuration the tasks run with (CALLREC_CONFIG_TOML; no secrets in it)."
  value       = local.config_toml
}
