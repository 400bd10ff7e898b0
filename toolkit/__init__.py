"""sagemaker-hybrid-routing: config, CLI, model pipeline, pricing and the embedded AWS."""

__version__ = "0.1.0"
