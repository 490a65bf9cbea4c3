# One bucket per line of business and the staging bucket: private, SSE-KMS, versioned, TLS only,
# with lifecycle rules; optionally Object Lock on the recordings.
locals {
  recording_buckets = { for name, line in var.lines_of_business : name => line.bucket }
  buckets           = merge({ for name, bucket in local.recording_buckets : "lob-${name}" => bucket }, { staging = var.staging_bucket })
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is the account's disaster-recovery choice (it doubles storage): add it beside the module.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: callrec records every object it writes in its own store.
  #checkov:skip=CKV2_AWS_61:Every bucket has one (aws_s3_bucket_lifecycle_configuration.staging and .recordings, keyed by for_each, which the check cannot follow); deploy/verify.py reads them back.
  for_each            = local.buckets
  bucket              = each.value
  force_destroy       = var.force_destroy_buckets
  object_lock_enabled = each.key != "staging" && var.object_lock != null
  tags                = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = aws_s3_bucket.this
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each      = var.access_log_bucket == null ? {} : aws_s3_bucket.this
  bucket        = each.value.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${each.value.id}/"
}

data "aws_iam_policy_document" "tls_only" {
  for_each = aws_s3_bucket.this
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json
  # A policy written before the public access block is refused by S3.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Staging: raw uploads expire after N days (a stored call's is removed by callrec at once);
# conflicts/ and facts/ are outside the prefix and kept for review.
resource "aws_s3_bucket_lifecycle_configuration" "staging" {
  bucket = aws_s3_bucket.this["staging"].id
  rule {
    id     = "expire-raw-uploads"
    status = "Enabled"
    filter {
      prefix = "${var.staging_prefix}/"
    }
    expiration {
      days = var.staging_expiry_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  depends_on = [aws_s3_bucket_versioning.this]
}

# Recordings: to cheaper classes as configured. callrec never overwrites or deletes a recording;
# old versions (only from someone else's writes) go after 30 days.
resource "aws_s3_bucket_lifecycle_configuration" "recordings" {
  for_each = local.recording_buckets
  bucket   = aws_s3_bucket.this["lob-${each.key}"].id
  rule {
    id     = "recordings"
    status = "Enabled"
    filter {}
    dynamic "transition" {
      for_each = var.recording_transitions
      content {
        days          = transition.value.days
        storage_class = transition.value.storage_class
      }
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_object_lock_configuration" "recordings" {
  for_each = var.object_lock == null ? {} : local.recording_buckets
  bucket   = aws_s3_bucket.this["lob-${each.key}"].id
  rule {
    default_retention {
      mode = var.object_lock.mode
      days = var.object_lock.days
    }
  }
  depends_on = [aws_s3_bucket_versioning.this]
}
