# The table exactly as `callrec init` creates it (ingest-shim/src/store/dynamo/mod.rs): string
# keys pk/sk, and six indexes, each keyed {index}_pk/{index}_sk: five sparse ones with every
# attribute projected, and the calendar (day) with keys only. `callrec init --check` compares a table with this shape; deploy/test.sh runs it
# against the table this module creates, so the two cannot drift.
locals {
  indexes           = ["pending", "work", "attention", "day", "due", "open"]
  keys_only_indexes = ["day"]
  index_attributes = flatten([
    for index in local.indexes : ["${index}_pk", "${index}_sk"]
  ])
}

resource "aws_dynamodb_table" "calls" {
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  dynamic "attribute" {
    for_each = local.index_attributes
    content {
      name = attribute.value
      type = "S"
    }
  }
  dynamic "global_secondary_index" {
    for_each = local.indexes
    content {
      name            = global_secondary_index.value
      hash_key        = "${global_secondary_index.value}_pk"
      range_key       = "${global_secondary_index.value}_sk"
      projection_type = contains(local.keys_only_indexes, global_secondary_index.value) ? "KEYS_ONLY" : "ALL"
    }
  }

  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = var.tags
}
