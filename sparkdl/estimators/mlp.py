"""Multi-layer perceptron estimators (architecture ``mlp``)."""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters

from sparkdl.estimators.base import TorchEstimator, TorchModel
from sparkdl.estimators.params import add_accessors


class _MLPParams(Params):
    hiddenLayers = Param(Params._dummy(), "hiddenLayers", "widths of the hidden layers", typeConverter=TypeConverters.toListInt)
    activation = Param(Params._dummy(), "activation", "relu, tanh, sigmoid or gelu", typeConverter=TypeConverters.toString)
    blockType = Param(Params._dummy(), "blockType", "plain, residual, highway or dense", typeConverter=TypeConverters.toString)
    batchNorm = Param(Params._dummy(), "batchNorm", "batch normalisation after each hidden layer", typeConverter=TypeConverters.toBoolean)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(hiddenLayers=[100], activation="relu", blockType="plain", batchNorm=False)


@add_accessors
class MLPClassifierModel(TorchModel, _MLPParams):
    """A fitted ``MLPClassifier``: adds ``prediction``, ``rawPrediction`` and ``probability``."""


@add_accessors
class MLPClassifier(TorchEstimator, _MLPParams):
    """A multi-layer perceptron classifier trained data-parallel on Spark.

    Labels are class indices 0..k-1 (double or integer); features are
    array<float>/array<double> or MLlib vectors.

    >>> from sparkdl.estimators import MLPClassifier
    >>> clf = MLPClassifier(hiddenLayers=[64, 64], epochs=20, numProc=2)
    >>> model = clf.fit(train)                       # horovod, 2 ranks
    >>> model.transform(test).select("label", "prediction").show(3)
    """

    _model_class = MLPClassifierModel

    @keyword_only
    def __init__(self, **kwargs: Any) -> None:
        kwargs = self._input_kwargs
        super().__init__()
        self._setDefault(architecture="mlp", task="classification")
        self._set(**kwargs)

    def _architecture_params(self) -> dict[str, Any]:
        params = super()._architecture_params()
        for name in ("hiddenLayers", "activation", "blockType", "batchNorm"):
            params.setdefault(name, self.getOrDefault(name))
        return params
