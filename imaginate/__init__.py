"""imaginate: ten research systems as one trainable, testable PyTorch package."""

__version__ = "0.1.0"
