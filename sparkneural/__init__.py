"""sparkneural: PyTorch models as Spark ML estimators, trained data-parallel with Horovod."""

__version__ = "0.1.0"
