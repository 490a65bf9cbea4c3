# Logs, alarms and the dashboard. callrec's metrics reach CloudWatch through the collector
# sidecar (ecs.tf) in namespace var.metrics_namespace; counters arrive as the increase over each
# scrape, summed across tasks.
resource "aws_cloudwatch_log_group" "callrec" {
  name              = "/${var.name}/service"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "metrics" {
  #checkov:skip=CKV_AWS_338:Raw embedded-metric-format records: CloudWatch keeps the metrics themselves for 15 months; a week of the records is enough.
  name              = "/${var.name}/metrics"
  retention_in_days = 7
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

locals {
  # Alarms on callrec's own metrics: name => what it watches. Every one is in the runbook
  # (docs/OPERATIONS.md, "Alarms") under its name.
  counter_alarms = {
    "calls-lost" = {
      metric      = "callrec_calls_lost_total"
      dimensions  = {}
      description = "Calls given up on: past OCP's retention or out of export attempts. Runbook: calls-lost."
    }
    "export-jobs-failed" = {
      metric      = "callrec_export_jobs_total"
      dimensions  = { outcome = "failed" }
      description = "Stage 2 export jobs failed. Runbook: export-jobs-failed."
    }
    "replay-mismatch" = {
      metric      = "callrec_pipeline_failures_total"
      dimensions  = { kind = "replay_mismatch" }
      description = "A resumed call's replay did not reproduce its recorded output; not stored. Runbook: replay-mismatch."
    }
    "calls-unprocessed" = {
      metric      = "callrec_calls_unprocessed_total"
      dimensions  = {}
      description = "Recordings the engine could not take, stored as they arrived under unprocessed/. Runbook: calls-unprocessed."
    }
    "audit-found-calls" = {
      metric      = "callrec_audit_calls_total"
      dimensions  = { outcome = "found" }
      description = "The daily audit found calls of which nothing had arrived (no CDR, no recording): they are being recovered, but the stream lost them. Runbook: audit-found-calls."
    }
    "ocp-auth-failures" = {
      metric      = "callrec_ocp_auth_failures_total"
      dimensions  = {}
      description = "OCP refused callrec's credentials (or TLS failed): stage 2 is stopped. Runbook: ocp-auth-failures."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "counter" {
  for_each            = local.counter_alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = var.metrics_namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

locals {
  # Alarms on callrec's gauges: the value's maximum over 5 minutes above a threshold, twice.
  gauge_alarms = {
    "oldest-unstored" = {
      metric      = "callrec_oldest_unstored_age_seconds"
      threshold   = var.oldest_unstored_alarm_seconds
      missing     = "breaching"
      description = "The oldest call received and not stored is older than ${var.oldest_unstored_alarm_seconds} s: the pipeline is stuck or far behind. Runbook: oldest-unstored."
    }
    "audit-day-incomplete" = {
      metric      = "callrec_audit_days_incomplete"
      threshold   = 0
      missing     = "notBreaching"
      description = "A day's calls that OCP reported are not all stored past the audit's deadline ([audit] deadline_hours). Runbook: audit-day-incomplete."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "gauge" {
  for_each            = local.gauge_alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = var.metrics_namespace
  metric_name         = each.value.metric
  dimensions          = {}
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  alarm_name          = "${var.name}-5xx-rate"
  alarm_description   = "More than ${var.error_rate_alarm_percent}% of requests answered 5xx (callrec's or the load balancer's). Runbook: 5xx-rate."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_alarm_percent
  evaluation_periods  = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  metric_query {
    id          = "rate"
    expression  = "100 * (FILL(target5xx, 0) + FILL(lb5xx, 0)) / MAX([requests, 1])"
    label       = "5xx %"
    return_data = true
  }
  metric_query {
    id = "target5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }
  metric_query {
    id = "lb5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      stat        = "Sum"
      period      = 300
    }
  }
  tags = var.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Funnel: calls per flag"
          region = local.region
          stat   = "Maximum"
          period = 300
          metrics = [for state in ["started", "ended", "received", "processed", "stored"] :
          [var.metrics_namespace, "callrec_calls", "state", state]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Throughput: uploads and requests"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            [var.metrics_namespace, "callrec_uploads_total", "outcome", "created"],
            [var.metrics_namespace, "callrec_uploads_total", "outcome", "busy"],
            ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", aws_lb.this.arn_suffix],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title  = "Latency: load balancer to callrec (p50, p99)"
          region = local.region
          period = 300
          metrics = [
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "p50" }],
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", aws_lb.this.arn_suffix, { stat = "p99" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title  = "Backlog: oldest call not stored (s), queue depth"
          region = local.region
          stat   = "Maximum"
          period = 300
          metrics = [
            [var.metrics_namespace, "callrec_oldest_unstored_age_seconds"],
            [var.metrics_namespace, "callrec_pipeline_queue_depth", { yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 24, height = 6
        properties = {
          title  = "Trouble: lost, unprocessed, failed export jobs, replay mismatches"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            [var.metrics_namespace, "callrec_calls_lost_total"],
            [var.metrics_namespace, "callrec_calls_unprocessed_total"],
            [var.metrics_namespace, "callrec_export_jobs_total", "outcome", "failed"],
            [var.metrics_namespace, "callrec_pipeline_failures_total", "kind", "replay_mismatch"],
          ]
        }
      },
    ]
  })
}
