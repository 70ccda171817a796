"""Spark ML Estimators and Models wrapping torch architectures.

Each estimator ``X`` fits an ``XModel`` (a ``TorchModel``); any saved model
loads with ``TorchModel.load(path)``.

The classes are imported on first use: ``sparkneural.estimators.inference``
and ``sparkneural.estimators.scoring`` (what ``transform`` runs on the
executors) must import where Spark is not installed.
"""

import importlib

_MODULES = {
    "autoencoder": ("Autoencoder", "AutoencoderModel"),
    "base": ("TorchEstimator", "TorchModel"),
    "cnn": ("CNNClassifier", "CNNClassifierModel", "CNNRegressor", "CNNRegressorModel"),
    "mlp": ("MLPClassifier", "MLPClassifierModel", "MLPRegressor", "MLPRegressorModel"),
    "persistence": ("allow_pickle",),
    "recurrent": ("RNNClassifier", "RNNClassifierModel", "RNNRegressor", "RNNRegressorModel"),
    "seq2seq": ("Seq2Seq", "Seq2SeqModel"),
    "tcn": ("TCNClassifier", "TCNClassifierModel", "TCNRegressor", "TCNRegressorModel"),
    "transformer": ("TransformerClassifier", "TransformerClassifierModel", "TransformerRegressor", "TransformerRegressorModel"),
    "wavenet": ("WaveNet", "WaveNetModel"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"sparkneural.estimators.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'sparkneural.estimators' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
