"""Multi-layer perceptron estimators (architecture ``mlp``)."""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters

from sparkdl.estimators.base import NamedTorchEstimator, TorchModel
from sparkdl.estimators.params import add_accessors


class _MLPParams(Params):
    hiddenLayers = Param(Params._dummy(), "hiddenLayers", "widths of the hidden layers", typeConverter=TypeConverters.toListInt)
    activation = Param(Params._dummy(), "activation", "relu, tanh, sigmoid or gelu", typeConverter=TypeConverters.toString)
    blockType = Param(Params._dummy(), "blockType", "plain, residual, highway or dense", typeConverter=TypeConverters.toString)
    batchNorm = Param(Params._dummy(), "batchNorm", "batch normalisation after each hidden layer", typeConverter=TypeConverters.toBoolean)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(hiddenLayers=[100], activation="relu", blockType="plain", batchNorm=False)


MLP_ARGUMENTS = ("hiddenLayers", "activation", "blockType", "batchNorm")


@add_accessors
class MLPClassifierModel(TorchModel, _MLPParams):
    """A fitted ``MLPClassifier``: adds ``prediction``, ``rawPrediction`` and ``probability``."""


@add_accessors
class MLPClassifier(NamedTorchEstimator, _MLPParams):
    """A multi-layer perceptron classifier trained data-parallel on Spark.

    Labels are class indices 0..k-1 (double or integer); features are
    array<float>/array<double> or MLlib vectors. ``blockType`` picks plain,
    residual, highway or densely connected hidden blocks.

    >>> from sparkdl.estimators import MLPClassifier
    >>> clf = MLPClassifier(hiddenLayers=[64, 64], epochs=20, numProc=2)
    >>> model = clf.fit(train)                       # horovod, 2 ranks
    >>> model.transform(test).select("label", "prediction").show(3)
    """

    _model_class = MLPClassifierModel
    _architecture_name, _task, _architecture_param_names = "mlp", "classification", MLP_ARGUMENTS


@add_accessors
class MLPRegressorModel(TorchModel, _MLPParams):
    """A fitted ``MLPRegressor``: adds ``prediction`` (double, or array<float> for array labels)."""


@add_accessors
class MLPRegressor(NamedTorchEstimator, _MLPParams):
    """A multi-layer perceptron regressor; the label is a number or an array (several outputs).

    >>> from sparkdl.estimators import MLPRegressor
    >>> model = MLPRegressor(hiddenLayers=[32], epochs=30, backend="local").fit(df)
    >>> model.transform(df).select("label", "prediction").show(3)
    """

    _model_class = MLPRegressorModel
    _architecture_name, _task, _architecture_param_names = "mlp", "regression", MLP_ARGUMENTS
