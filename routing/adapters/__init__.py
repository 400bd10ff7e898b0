"""Everything that calls AWS, the disk or the clock: CloudWatch metrics, the SageMaker endpoint,
the state stores (JSON files, DynamoDB), boto3 clients, clocks. Thin: no decision is made here.
"""
