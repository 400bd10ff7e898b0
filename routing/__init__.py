"""The routing decision core (pure) and its adapters (CloudWatch, SageMaker, state store, client)."""
