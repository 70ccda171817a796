"""Transformer encoder estimators (architecture ``transformer``) for whole sequences.

Features are either float sequences flattened time-major (``inputShape=
[timesteps, features]``, as ``SequenceWindower`` writes them) or token ids
(``vocabSize > 0``; ``inputShape=[timesteps]``, padded with ``padId``).
"""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.sql import functions as F

from sparkdl.estimators.base import NamedTorchEstimator, TorchModel
from sparkdl.estimators.params import add_accessors

TRANSFORMER_ARGUMENTS = ("dModel", "numHeads", "numLayers", "feedForward", "vocabSize", "padId", "pooling", "positional")


class _TransformerParams(Params):
    dModel = Param(Params._dummy(), "dModel", "width of the token states (a multiple of numHeads)", typeConverter=TypeConverters.toInt)
    numHeads = Param(Params._dummy(), "numHeads", "attention heads per layer", typeConverter=TypeConverters.toInt)
    numLayers = Param(Params._dummy(), "numLayers", "encoder layers", typeConverter=TypeConverters.toInt)
    feedForward = Param(Params._dummy(), "feedForward", "width of each layer's feed-forward network", typeConverter=TypeConverters.toInt)
    vocabSize = Param(Params._dummy(), "vocabSize", "number of token ids when the features are ids (0: float features)", typeConverter=TypeConverters.toInt)
    padId = Param(Params._dummy(), "padId", "id of padding when the features are ids", typeConverter=TypeConverters.toInt)
    pooling = Param(Params._dummy(), "pooling", "mean, cls or last: how the sequence becomes one vector", typeConverter=TypeConverters.toString)
    positional = Param(Params._dummy(), "positional", "sinusoidal, learned or none position encodings", typeConverter=TypeConverters.toString)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(dModel=64, numHeads=4, numLayers=2, feedForward=128, vocabSize=0, padId=0,
                         pooling="mean", positional="sinusoidal")


class _TransformerEstimator(NamedTorchEstimator, _TransformerParams):
    _architecture_name, _architecture_param_names = "transformer", TRANSFORMER_ARGUMENTS

    def _summarize(self, dataset):
        summary = super()._summarize(dataset)
        vocab = self.getVocabSize()
        if vocab > 0:
            column = F.col(self.getFeaturesCol())
            row = dataset.agg(
                F.min(F.array_min(column)).alias("low"), F.max(F.array_max(column)).alias("high"),
                F.sum(F.size(F.filter(column, lambda x: x != F.floor(x)))).alias("fractional"),
            ).first()
            if row["fractional"]:
                raise ValueError(f"featuresCol column {self.getFeaturesCol()!r}: expected integer token ids, found {row['fractional']} non-integral values")
            if row["low"] < 0 or row["high"] >= vocab:
                raise ValueError(
                    f"featuresCol column {self.getFeaturesCol()!r}: expected token ids in 0..{vocab - 1} "
                    f"(vocabSize {vocab}), found values from {row['low']:g} to {row['high']:g}"
                )
        return summary

    def _architecture_params(self):
        # the estimator's dropout Param (default 0.0) is what the network gets
        return {**super()._architecture_params(), "dropout": self.getDropout()}


@add_accessors
class TransformerClassifierModel(TorchModel, _TransformerParams):
    """A fitted ``TransformerClassifier``: adds ``prediction``, ``rawPrediction`` and ``probability``."""


@add_accessors
class TransformerClassifier(_TransformerEstimator):
    """Classify whole sequences with a Transformer encoder (multi-head self-attention).

    >>> clf = TransformerClassifier(inputShape=[50, 1], dModel=32, numHeads=4, epochs=20, numProc=2)
    >>> model = clf.fit(windows)            # features: 50 steps x 1 value, label: class 0..k-1
    >>> model.transform(test).select("label", "prediction").show(3)
    """

    _model_class = TransformerClassifierModel
    _task = "classification"


@add_accessors
class TransformerRegressorModel(TorchModel, _TransformerParams):
    """A fitted ``TransformerRegressor``: adds ``prediction``."""


@add_accessors
class TransformerRegressor(_TransformerEstimator):
    """Regress a value (or several) from a whole sequence with a Transformer encoder.

    >>> model = TransformerRegressor(inputShape=[24, 3], pooling="last", epochs=30).fit(windows)
    """

    _model_class = TransformerRegressorModel
    _task = "regression"
