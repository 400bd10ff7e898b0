"""The decision core: pure functions over typed data. State, observations and time in; a decision out.

Nothing here imports boto3/botocore or the toolkit at runtime, reads the clock, or touches the
disk or the network (tests/routing/core/test_layering.py fails otherwise). AWS, disk and clock live in
routing/adapters; routing/controller.py wires the two together.
"""
