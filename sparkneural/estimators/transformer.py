"""Transformer encoder estimators (architecture ``transformer``) for whole sequences.

Features are either float sequences flattened time-major (``inputShape=
[timesteps, features]``, as ``SequenceWindower`` writes them) or token ids
(``vocabSize > 0``; ``inputShape=[timesteps]``, padded with ``padId``).
"""

from __future__ import annotations

from pyspark.ml.param import Params
from pyspark.sql import functions as F

from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import declare, declared_defaults, stage
from sparkneural.training.declared import Declared, to_int, to_string

TRANSFORMER_ARGUMENTS = ("dModel", "numHeads", "numLayers", "feedForward", "vocabSize", "padId", "pooling", "positional")


@declare(
    Declared("dModel", "width of the token states (a multiple of numHeads)", to_int, 64),
    Declared("numHeads", "attention heads per layer", to_int, 4),
    Declared("numLayers", "encoder layers", to_int, 2),
    Declared("feedForward", "width of each layer's feed-forward network", to_int, 128),
    Declared("vocabSize", "number of token ids when the features are ids (0: float features)", to_int, 0),
    Declared("padId", "id of padding when the features are ids", to_int, 0),
    Declared("pooling", "mean, cls or last: how the sequence becomes one vector", to_string, "mean"),
    Declared("positional", "sinusoidal, learned or none position encodings", to_string, "sinusoidal"),
)
class _TransformerParams(Params):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _TransformerParams)


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

    def _architecture_params(self, summary):
        # the estimator's dropout Param (default 0.0) is what the network gets
        return {**super()._architecture_params(summary), "dropout": self.getDropout()}


@stage
class TransformerClassifierModel(TorchModel, _TransformerParams):
    """A fitted ``TransformerClassifier``: adds ``prediction``, ``rawPrediction`` and ``probability``.

    Token ids (``vocabSize > 0``, ``inputShape=[timesteps]``) work as well as float sequences:

    >>> from sparkneural.estimators import TransformerClassifier
    >>> df = spark.createDataFrame([([float(1 + (i + t) % 4) for t in range(6)], float(i % 2)) for i in range(16)],
    ...                            "features array<double>, label double")
    >>> model = TransformerClassifier(inputShape=[6], vocabSize=5, dModel=8, numHeads=2, numLayers=1,
    ...                               feedForward=16, epochs=1, backend="local", verbose=0).fit(df)
    >>> type(model).__name__, model.numClasses
    ('TransformerClassifierModel', 2)
    """


@stage
class TransformerClassifier(_TransformerEstimator):
    """Classify whole sequences with a Transformer encoder (multi-head self-attention).

    >>> from sparkneural.estimators import TransformerClassifier
    >>> windows = spark.createDataFrame([([float((i + t) % 2) for t in range(8)], float(i % 2)) for i in range(32)],
    ...                                 "features array<double>, label double")
    >>> clf = TransformerClassifier(inputShape=[8, 1], dModel=8, numHeads=2, numLayers=1, feedForward=16,
    ...                             epochs=2, backend="local", verbose=0)
    >>> model = clf.fit(windows)            # features: 8 steps x 1 value, label: class 0..k-1
    >>> model.transform(windows).select("label", "prediction").count()
    32
    """

    _model_class = TransformerClassifierModel
    _task_name = "classification"


@stage
class TransformerRegressorModel(TorchModel, _TransformerParams):
    """A fitted ``TransformerRegressor``: adds ``prediction``.

    >>> from sparkneural.estimators import TransformerRegressor
    >>> df = spark.createDataFrame([([float(i + t) for t in range(4)], float(i + 4)) for i in range(16)],
    ...                            "features array<double>, label double")
    >>> model = TransformerRegressor(inputShape=[4, 1], dModel=8, numHeads=2, numLayers=1, feedForward=16,
    ...                              epochs=1, backend="local", verbose=0).fit(df)
    >>> model.transform(df).select("prediction").dtypes
    [('prediction', 'double')]
    """


@stage
class TransformerRegressor(_TransformerEstimator):
    """Regress a value (or several) from a whole sequence with a Transformer encoder.

    >>> import math
    >>> from sparkneural.estimators import TransformerRegressor
    >>> windows = spark.createDataFrame([([math.sin(0.3 * (i + t // 2)) for t in range(12)], math.sin(0.3 * (i + 6)))
    ...                                  for i in range(32)], "features array<double>, label double")
    >>> model = TransformerRegressor(inputShape=[6, 2], pooling="last", dModel=8, numHeads=2, numLayers=1,
    ...                              feedForward=16, epochs=2, backend="local", verbose=0).fit(windows)
    >>> model.transform(windows).select("label", "prediction").count()
    32
    """

    _model_class = TransformerRegressorModel
    _task_name = "regression"
