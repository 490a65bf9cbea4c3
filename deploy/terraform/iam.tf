# Least privilege: the task role reaches only this table and its indexes, these buckets (objects
# deleted only in staging, and under unprocessed/ once re-processed), and the KMS key; the execution role only pulls the image,
# writes the logs and reads the two secrets.
data "aws_partition" "current" {}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "CallsTable"
    # What callrec calls: GetItem, BatchGetItem, PutItem, Query, TransactWriteItems (its puts,
    # counter updates and condition checks are authorized as the item actions), DescribeTable
    # (readiness). Never Scan, DeleteItem or table changes.
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:ConditionCheckItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
    ]
    resources = [
      aws_dynamodb_table.calls.arn,
      "${aws_dynamodb_table.calls.arn}/index/*",
    ]
  }
  statement {
    sid       = "ListBuckets"
    actions   = ["s3:ListBucket"]
    resources = [for b in aws_s3_bucket.this : b.arn]
  }
  statement {
    sid       = "WriteAndReadObjects"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
    resources = [for b in aws_s3_bucket.this : "${b.arn}/*"]
  }
  statement {
    sid       = "RemoveStagedUploads"
    actions   = ["s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this["staging"].arn}/*"]
  }
  statement {
    # `callrec redrive --unprocessed` removes an original stored unprocessed once its processed
    # recording is the call's (versioning keeps it as a noncurrent version). No other key.
    sid       = "RemoveReprocessedOriginals"
    actions   = ["s3:DeleteObject"]
    resources = [for name, b in aws_s3_bucket.this : "${b.arn}/*unprocessed/*" if name != "staging"]
  }
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "UseTheKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  name   = "callrec"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.callrec.arn}:*"]
  }
  statement {
    sid     = "Secrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = concat(
      [aws_secretsmanager_secret.bearer_tokens.arn],
      aws_secretsmanager_secret.ocp_token[*].arn,
    )
  }
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]
    content {
      sid       = "PullImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [statement.value]
    }
  }
  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]
    content {
      sid = "EcrLogin"
      # ECR's token is per registry, not per repository: this action takes no resource.
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "callrec-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# The metrics sidecar writes embedded-metric-format logs into its own log stream.
data "aws_iam_policy_document" "metrics" {
  statement {
    sid       = "MetricsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
  }
}

resource "aws_iam_role_policy" "metrics" {
  name   = "callrec-metrics"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.metrics.json
}
