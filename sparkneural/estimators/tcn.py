"""Temporal convolutional network estimators (architecture ``tcn``): causal dilated convolutions over windows.

Features hold ``inputShape=[channels, length]`` values, channel-major (one
channel: a window of ``SequenceWindower``); the network predicts from the last
time step, which reads the receptive field 1 + 2 (kernelSize - 1) (2^levels - 1).
"""

from __future__ import annotations

from pyspark.ml.param import Params

from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import declare, declared_defaults, stage
from sparkneural.training.declared import Declared, to_int, to_int_list


@declare(
    Declared("channels", "output channels of each level; level i has dilation 2^i", to_int_list, [32, 32, 32, 32]),
    Declared("kernelSize", "width of the causal convolutions", to_int, 3),
)
class _TCNParams(Params):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _TCNParams)


class _TCNEstimator(NamedTorchEstimator, _TCNParams):
    _architecture_name, _architecture_param_names = "tcn", ("channels", "kernelSize")


@stage
class TCNRegressorModel(TorchModel, _TCNParams):
    """A fitted ``TCNRegressor``: adds ``prediction``.

    >>> from sparkneural.estimators import TCNRegressor
    >>> df = spark.createDataFrame([([float(i + t) for t in range(8)], float(i + 8)) for i in range(16)],
    ...                            "features array<double>, label double")
    >>> model = TCNRegressor(inputShape=[1, 8], channels=[4], epochs=1, backend="local", verbose=0).fit(df)
    >>> model.transform(df).select("prediction").dtypes
    [('prediction', 'double')]
    """


@stage
class TCNRegressor(_TCNEstimator):
    """Regress the next value (or several) of a series from a window with a temporal convolutional network.

    >>> import math
    >>> from sparkneural.estimators import TCNRegressor
    >>> df = spark.createDataFrame([([math.sin(0.3 * (i + t)) for t in range(16)], math.sin(0.3 * (i + 16)))
    ...                             for i in range(64)], "features array<double>, label double")
    >>> model = TCNRegressor(inputShape=[1, 16], channels=[8, 8], epochs=2, backend="local", verbose=0).fit(df)
    >>> model.transform(df).select("prediction").count()
    64
    """

    _model_class, _task_name = TCNRegressorModel, "regression"


@stage
class TCNClassifierModel(TorchModel, _TCNParams):
    """A fitted ``TCNClassifier``: adds ``prediction``, ``rawPrediction`` and ``probability``.

    >>> from sparkneural.estimators import TCNClassifier
    >>> df = spark.createDataFrame([([float((i + t) % 3) for t in range(8)], float(i % 3)) for i in range(24)],
    ...                            "features array<double>, label double")
    >>> model = TCNClassifier(inputShape=[1, 8], channels=[4], epochs=1, backend="local", verbose=0).fit(df)
    >>> type(model).__name__, model.numClasses
    ('TCNClassifierModel', 3)
    """


@stage
class TCNClassifier(_TCNEstimator):
    """Classify windows of one or more channels with a temporal convolutional network.

    >>> from sparkneural.estimators import TCNClassifier
    >>> df = spark.createDataFrame([([float((i + t) % 2) for t in range(8)], float(i % 2)) for i in range(32)],
    ...                            "features array<double>, label double")
    >>> model = TCNClassifier(inputShape=[1, 8], channels=[4], epochs=2, backend="local", verbose=0).fit(df)
    >>> sorted(model.transform(df).columns)
    ['features', 'label', 'prediction', 'probability', 'rawPrediction']
    """

    _model_class, _task_name = TCNClassifierModel, "classification"
