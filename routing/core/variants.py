"""The two production variant names (one definition; toolkit.config re-exports them)."""

NEURON = "neuron"
GPU = "gpu"
VARIANTS = (NEURON, GPU)
