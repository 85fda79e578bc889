"""AutoFusion: search for multimodal fusion architectures with a closed, honest loop."""

__version__ = "0.1.0"
