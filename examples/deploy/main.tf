# Terraform: publish the lambda-otel-bridge layer and attach it to a function.
# Build the layer first: scripts/build-layer.sh x86_64   (creates dist/lambda-otel-bridge-x86_64.zip)

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
