# The ECS cluster, `callrec serve` (behind the load balancer), optionally `callrec reconcile`,
# and a task definition for one-off `callrec backfill` runs.
data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
  # callrec's configuration, written as the TOML file it reads (CALLREC_CONFIG_TOML): JSON
  # strings are TOML basic strings.
  rule_lines = flatten([
    for rule in var.routing_rules : concat(
      ["[[routing.rules]]", "line_of_business = ${jsonencode(rule.line_of_business)}"],
      [for field in ["group_id", "application", "application_type", "ivr_channel", "direction"] :
      "${field} = ${jsonencode(rule[field])}" if rule[field] != null],
    )
  ])
  line_lines = flatten([
    for name, line in var.lines_of_business : concat(
      ["[lines_of_business.${jsonencode(name)}]", "bucket = ${jsonencode(line.bucket)}"],
      line.key_template == null ? [] : ["key_template = ${jsonencode(line.key_template)}"],
      line.storage_class == null ? [] : ["storage_class = ${jsonencode(line.storage_class)}"],
      var.kms_key_arn == null ? [] : ["kms_key_id = ${jsonencode(var.kms_key_arn)}"],
    )
  ])
  ocp_lines = var.ocp == null ? [] : concat(
    ["[ocp]"],
    [for field in ["region", "base_url", "default_group"] :
    "${field} = ${jsonencode(var.ocp[field])}" if var.ocp[field] != null],
  )
  # Stage 2 runs inside the serve tasks unless it has its own service.
  reconcile_in_serve = var.ocp != null && !var.reconcile_service
  config_toml = join("\n", concat(
    [
      "[state]",
      "backend = \"dynamodb\"",
      "dynamodb_table = ${jsonencode(aws_dynamodb_table.calls.name)}",
      "region = ${jsonencode(local.region)}",
      "[objects]",
      "backend = \"s3\"",
      "region = ${jsonencode(local.region)}",
      "[server]",
      "listen = \"0.0.0.0:8080\"",
      # /metrics for the collector beside it, and nothing else: only the task reaches it.
      "admin_listen = \"127.0.0.1:9090\"",
      "engine_memory_mb = ${max(64, floor(var.memory / 2))}",
      "[reconcile]",
      "enabled = ${local.reconcile_in_serve}",
      "[routing]",
      "default = ${jsonencode(var.default_line_of_business)}",
      "staging = { bucket = ${jsonencode(var.staging_bucket)}, prefix = ${jsonencode(var.staging_prefix)} }",
    ],
    local.rule_lines,
    local.line_lines,
    local.ocp_lines,
    [""],
  ))

  environment = [
    for name, value in merge(
      { CALLREC_CONFIG_TOML = local.config_toml, CALLREC_LOG = "info" },
      var.extra_environment,
    ) : { name = name, value = value }
  ]
  secrets = concat(
    [{ name = "CALLREC_SERVER__BEARER_TOKENS", valueFrom = aws_secretsmanager_secret.bearer_tokens.arn }],
    [for s in aws_secretsmanager_secret.ocp_token : { name = "CALLREC_OCP__PERSONAL_ACCESS_TOKEN", valueFrom = s.arn }],
  )

  # The collector beside callrec: scrapes the operations listener every minute and writes the
  # metrics as CloudWatch embedded-metric-format logs (docs/OPERATIONS.md, "Metrics").
  collector_config = yamlencode({
    receivers = {
      prometheus = {
        config = {
          scrape_configs = [{
            job_name        = "callrec"
            scrape_interval = "60s"
            static_configs  = [{ targets = ["127.0.0.1:9090"] }]
          }]
        }
      }
    }
    exporters = {
      awsemf = {
        namespace               = var.metrics_namespace
        log_group_name          = aws_cloudwatch_log_group.metrics.name
        region                  = local.region
        dimension_rollup_option = "NoDimensionRollup"
        metric_declarations = [
          { dimensions = [["kind"]], metric_name_selectors = ["^callrec_pipeline_failures_total$"] },
          { dimensions = [["outcome"]], metric_name_selectors = ["^callrec_export_jobs_total$", "^callrec_uploads_total$", "^callrec_audit_calls_total$"] },
          { dimensions = [["state"]], metric_name_selectors = ["^callrec_calls$"] },
          {
            dimensions = [[]]
            metric_name_selectors = [
              "^callrec_calls_lost_total$",
              "^callrec_calls_unprocessed_total$",
              "^callrec_oldest_unstored_age_seconds$",
              "^callrec_pipeline_queue_depth$",
              "^callrec_leases_lost_total$",
              "^callrec_ocp_auth_failures_total$",
              "^callrec_audit_days_incomplete$",
            ]
          },
        ]
      }
    }
    service = {
      pipelines = {
        metrics = { receivers = ["prometheus"], exporters = ["awsemf"] }
      }
    }
  })

  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.callrec.name
      awslogs-region        = local.region
      awslogs-stream-prefix = "callrec"
    }
  }

  callrec_container = {
    name                   = "callrec"
    image                  = var.image
    essential              = true
    environment            = local.environment
    secrets                = local.secrets
    readonlyRootFilesystem = true
    # Everything callrec writes (the spool, temporary files) is under the image's volume.
    mountPoints      = [{ sourceVolume = "data", containerPath = "/var/lib/callrec", readOnly = false }]
    logConfiguration = local.log_configuration
    # SIGTERM: callrec stops accepting and finishes the calls it accepted; Fargate's longest wait.
    stopTimeout = 120
    ulimits     = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
  }

  collector_container = {
    name                   = "metrics"
    image                  = var.adot_image
    essential              = false
    readonlyRootFilesystem = true
    command                = ["--config=env:AOT_CONFIG_CONTENT"]
    environment            = [{ name = "AOT_CONFIG_CONTENT", value = local.collector_config }]
    logConfiguration = merge(local.log_configuration, {
      options = merge(local.log_configuration.options, { awslogs-stream-prefix = "metrics" })
    })
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = var.tags
}

# The task definitions, alike but for their containers: `callrec serve` (with the metrics
# collector), and with `ocp` set stage 2's `callrec reconcile` (a reconciliation-only replica)
# and `callrec backfill` (a one-off task: run it with its arguments as a command override,
# docs/OPERATIONS.md "Backfill").
locals {
  stage2_container = merge(local.callrec_container, {
    environment = concat(local.environment, [
      { name = "CALLREC_RECONCILE__ENABLED", value = "true" },
    ])
  })
  all_task_containers = {
    serve = [
      merge(local.callrec_container, {
        command      = ["serve", "--log-json"]
        portMappings = [{ containerPort = 8080, protocol = "tcp" }]
      }),
      local.collector_container,
    ]
    reconcile = [merge(local.stage2_container, { command = ["reconcile", "--log-json"] })]
    # A backfill's range and group come as the run's command override.
    backfill = [merge(local.stage2_container, { command = ["backfill", "--help"] })]
  }
  # Stage 2's only with OCP configured.
  task_containers = {
    for name, containers in local.all_task_containers : name => containers
    if name == "serve" || var.ocp != null
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each                 = local.task_containers
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
  ephemeral_storage {
    size_in_gib = var.ephemeral_storage_gib
  }
  volume {
    name = "data"
  }
  container_definitions = jsonencode(each.value)
  tags                  = var.tags
}

resource "aws_ecs_service" "serve" {
  name                               = "${var.name}-serve"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this["serve"].arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_ecs_managed_tags            = true
  health_check_grace_period_seconds  = 60
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = var.task_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.serve.arn
    container_name   = "callrec"
    container_port   = 8080
  }
  # Autoscaling owns the count once the service runs.
  lifecycle {
    ignore_changes = [desired_count]
  }
  depends_on = [aws_lb_listener.https]
  tags       = var.tags
}

resource "aws_ecs_service" "reconcile" {
  count                              = var.ocp != null && var.reconcile_service ? 1 : 0
  name                               = "${var.name}-reconcile"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this["reconcile"].arn
  desired_count                      = 1
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = var.task_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }
  tags = var.tags
}
