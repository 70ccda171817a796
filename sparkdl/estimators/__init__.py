"""Spark ML Estimators and Models wrapping torch architectures."""

from sparkdl.estimators.base import TorchEstimator, TorchModel
from sparkdl.estimators.mlp import MLPClassifier, MLPClassifierModel
from sparkdl.estimators.persistence import allow_pickle

__all__ = ["TorchEstimator", "TorchModel", "MLPClassifier", "MLPClassifierModel", "allow_pickle"]
