# The secrets callrec reads from its environment, injected by ECS. Terraform creates them empty:
# their values never pass through Terraform's state. Put them before the first deploy
# (docs/OPERATIONS.md, "Secrets"):
#   bearer tokens: a JSON array of the tokens OCP sends, e.g. ["<token of 16+ characters>"]
#   OCP token: the personal access token of the API user stage 2 logs in as
resource "aws_secretsmanager_secret" "bearer_tokens" {
  #checkov:skip=CKV2_AWS_57:The tokens are shared with OCP's configuration: rotated by hand with it (docs/OPERATIONS.md, Secrets), not by a Lambda.
  name                    = "${var.name}/bearer-tokens"
  description             = "callrec: the bearer tokens OCP sends (CALLREC_SERVER__BEARER_TOKENS), a JSON array"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret" "ocp_token" {
  #checkov:skip=CKV2_AWS_57:OCP issues personal access tokens in its console only: rotated by hand (docs/OPERATIONS.md, Secrets).
  count                   = var.ocp == null ? 0 : 1
  name                    = "${var.name}/ocp-personal-access-token"
  description             = "callrec: OCP's personal access token for the Exports API (CALLREC_OCP__PERSONAL_ACCESS_TOKEN)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}
