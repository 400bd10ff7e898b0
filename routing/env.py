"""Every environment variable the routing controller reads, in one place (names only; no reads here).

The CLI (`hybrid route ...`), the Lambda and the stack (cdk/controller.py) import the names from
here so a rename cannot leave one of them behind.
"""

CONFIG_JSON_ENV = "HYBRID_CONFIG"  # Lambda: JSON of the validated hybrid.yaml (the CLI reads a PATH from it)
TABLE_ENV = "HYBRID_TABLE"  # the DynamoDB table of the in-account controller
TOPIC_ENV = "HYBRID_TOPIC_ARN"  # the SNS topic for fallback/abort/promote notices (optional)
NOW_ENV = "HYBRID_NOW"  # pin the clock (ISO 8601): tests and replays only, never set by the stack
SETTLE_ENV = "HYBRID_SETTLE_SECONDS"  # extra delay before a CloudWatch minute counts as closed
DEFAULT_SETTLE_SECONDS = 60  # the CLI's default and what the stack sets for the Lambda: minutes land late
ENDPOINT_URL_ENV = "AWS_ENDPOINT_URL"  # boto3's own: points every client at the embedded AWS
