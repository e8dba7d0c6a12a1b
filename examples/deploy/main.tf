# Terraform: publish the lambda-otel-bridge layer and attach it to a function.
# Build the layer first: scripts/build-layer.sh x86_64   (creates dist/lambda-otel-bridge-x86_64.zip)
# Two functions: aws_lambda_function.orders exports to your collector; orders_direct exports
# straight to X-Ray, CloudWatch Logs and CloudWatch metrics (OTLP signed with SigV4 by the
# bridge, no collector), with the IAM policy that needs.

variable "collector_endpoint" {
  type        = string
  description = "OTLP endpoint of your collector, e.g. https://otel-gateway.example.com:4318"
}

variable "collector_headers" {
  type        = string
  default     = ""
  sensitive   = true
  description = "Optional OTLP headers (key=value,key2=value2), e.g. an API key"
}

variable "function_role_arn" {
  type        = string
  description = "Execution role of the function"
}

variable "direct_role_name" {
  type        = string
  description = "Execution role (name) of the direct-to-CloudWatch function; the policy below is attached to it"
}

variable "aws_region" {
  type        = string
  description = "Region of the functions and of the CloudWatch endpoints, e.g. eu-west-1"
}

resource "aws_lambda_layer_version" "otel_bridge" {
  layer_name               = "lambda-otel-bridge"
  description              = "Lambda Telemetry API to OpenTelemetry (OTLP)"
  filename                 = "${path.module}/../../dist/lambda-otel-bridge-x86_64.zip"
  source_code_hash         = filebase64sha256("${path.module}/../../dist/lambda-otel-bridge-x86_64.zip")
  compatible_architectures = ["x86_64"]
  license_info             = "Apache-2.0"
}

data "archive_file" "function" {
  type        = "zip"
  output_path = "${path.module}/function.zip"
  source {
    filename = "app.py"
    content  = <<-PY
      import logging
      logger = logging.getLogger()
      logger.setLevel(logging.INFO)
      def handler(event, context):
          logger.info("order received")
          return {"statusCode": 200}
    PY
  }
}

resource "aws_lambda_function" "orders" {
  function_name    = "orders-api"
  role             = var.function_role_arn
  runtime          = "python3.13"
  handler          = "app.handler"
  filename         = data.archive_file.function.output_path
  source_code_hash = data.archive_file.function.output_base64sha256
  architectures    = ["x86_64"]
  memory_size      = 512
  timeout          = 10
  layers           = [aws_lambda_layer_version.otel_bridge.arn]

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
  }

  environment {
    variables = {
      OTEL_SERVICE_NAME              = "orders-api"
      OTEL_EXPORTER_OTLP_ENDPOINT    = var.collector_endpoint
      OTEL_EXPORTER_OTLP_PROTOCOL    = "http/protobuf"
      OTEL_EXPORTER_OTLP_HEADERS     = var.collector_headers
      OTEL_EXPORTER_OTLP_COMPRESSION = "gzip"
      LAMBDA_OTEL_BRIDGE_FLUSH       = "adaptive"
    }
  }
}

# ---- Direct to CloudWatch's OTLP endpoints ----------------------------------
# Traces need CloudWatch Transaction Search enabled in the account; logs go to
# an existing log group and stream.

resource "aws_cloudwatch_log_group" "otlp" {
  name              = "/otel/orders-api-direct"
  retention_in_days = 14
}

resource "aws_cloudwatch_log_stream" "otlp" {
  name           = "lambda-otel-bridge"
  log_group_name = aws_cloudwatch_log_group.otlp.name
}

# What the bridge needs to sign its exports with the function's role.
resource "aws_iam_role_policy_attachment" "direct_xray" {
  role       = var.direct_role_name
  policy_arn = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
}

resource "aws_iam_role_policy" "direct_cloudwatch" {
  name = "lambda-otel-bridge-direct"
  role = var.direct_role_name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.otlp.arn}:*"
      },
      {
        Effect   = "Allow"
        Action   = ["cloudwatch:PutMetricData"]
        Resource = "*"
      }
    ]
  })
}

data "aws_iam_role" "direct" {
  name = var.direct_role_name
}

resource "aws_lambda_function" "orders_direct" {
  function_name    = "orders-api-direct"
  role             = data.aws_iam_role.direct.arn
  runtime          = "python3.13"
  handler          = "app.handler"
  filename         = data.archive_file.function.output_path
  source_code_hash = data.archive_file.function.output_base64sha256
  architectures    = ["x86_64"]
  memory_size      = 512
  timeout          = 10
  layers           = [aws_lambda_layer_version.otel_bridge.arn]

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
  }

  environment {
    variables = {
      OTEL_SERVICE_NAME                                 = "orders-api"
      LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_TRACES_ENDPOINT  = "https://xray.${var.aws_region}.amazonaws.com/v1/traces"
      LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_ENDPOINT    = "https://logs.${var.aws_region}.amazonaws.com/v1/logs"
      LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_METRICS_ENDPOINT = "https://monitoring.${var.aws_region}.amazonaws.com/v1/metrics"
      LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_LOGS_HEADERS     = "x-aws-log-group=${aws_cloudwatch_log_group.otlp.name},x-aws-log-stream=${aws_cloudwatch_log_stream.otlp.name}"
      LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_PROTOCOL         = "http/protobuf"
      LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_COMPRESSION      = "gzip"
      LAMBDA_OTEL_BRIDGE_FLUSH                          = "adaptive"
    }
  }

  depends_on = [aws_iam_role_policy.direct_cloudwatch, aws_iam_role_policy_attachment.direct_xray]
}
