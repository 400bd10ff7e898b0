"""CLI command groups. Each module exposes `register(app)`; toolkit/cli.py wires them.

One module per concept keeps the CLI file small and lets heavy imports (boto3, moto, the
CDK, matplotlib) happen inside the commands that need them, so `hybrid --help` stays fast.
"""
