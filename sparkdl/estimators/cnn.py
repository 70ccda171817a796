"""Convolutional estimators: LeNet-5 style for images, a 1-D conv net for signals.

The input shape picks the network: ``[channels, h, w]`` builds ``lenet``,
``[channels, length]`` builds ``conv1d``.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters

from sparkdl.estimators.base import NamedTorchEstimator, TorchModel
from sparkdl.estimators.params import add_accessors


class _CNNParams(Params):
    filters = Param(Params._dummy(), "filters", "output channels of each convolution", typeConverter=TypeConverters.toListInt)
    kernelSize = Param(Params._dummy(), "kernelSize", "width of the convolution kernels", typeConverter=TypeConverters.toInt)
    padding = Param(Params._dummy(), "padding", "same or valid (1-D also causal)", typeConverter=TypeConverters.toString)
    poolSize = Param(Params._dummy(), "poolSize", "max-pooling window after each 2-D convolution", typeConverter=TypeConverters.toInt)
    denseUnits = Param(Params._dummy(), "denseUnits", "width of the dense layer before the output (1-D: 0 for none)", typeConverter=TypeConverters.toInt)
    stride = Param(Params._dummy(), "stride", "stride of the 1-D convolutions", typeConverter=TypeConverters.toInt)
    dilation = Param(Params._dummy(), "dilation", "dilation of the 1-D convolutions", typeConverter=TypeConverters.toInt)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(filters=[20, 50], kernelSize=5, padding="same", poolSize=2, denseUnits=500, stride=1, dilation=1)


class _CNNEstimator(NamedTorchEstimator, _CNNParams):
    _architecture_name = "lenet"

    def _architecture_for(self, shape):
        if self.isSet(self.architecture) and self.getArchitecture() not in ("lenet", "conv1d"):
            return self.getArchitecture()
        return "conv1d" if len(shape) == 2 else "lenet"

    def _validate_params(self) -> None:
        super()._validate_params()
        shape = self.getInputShape()
        if shape is None or len(shape) not in (2, 3):
            raise ValueError(
                f"inputShape: expected [channels, h, w] (images) or [channels, length] (signals), found {shape}"
            )

    def _architecture_params(self) -> dict[str, Any]:
        params = super()._architecture_params()
        names = ["filters", "kernelSize", "padding", "denseUnits"]
        names += ["stride", "dilation"] if len(self.getInputShape()) == 2 else ["poolSize"]
        for name in names:
            params.setdefault(name, self.getOrDefault(name))
        return params


@add_accessors
class CNNClassifierModel(TorchModel, _CNNParams):
    """A fitted ``CNNClassifier``."""


@add_accessors
class CNNClassifier(_CNNEstimator):
    """A convolutional classifier; ``inputShape`` is required.

    conv 20 5x5 (same) -> ReLU -> max-pool 2 -> conv 50 5x5 -> ReLU -> max-pool 2
    -> dense 500 -> ReLU -> classes, for ``[channels, h, w]``; a stack of 1-D
    convolutions with global pooling for ``[channels, length]``.

    >>> from sparkdl.estimators import CNNClassifier
    >>> clf = CNNClassifier(inputShape=[1, 8, 8], epochs=15, numProc=2)
    >>> model = clf.fit(digits_train)
    """

    _model_class = CNNClassifierModel
    _task = "classification"


@add_accessors
class CNNRegressorModel(TorchModel, _CNNParams):
    """A fitted ``CNNRegressor``."""


@add_accessors
class CNNRegressor(_CNNEstimator):
    """A convolutional regressor (same networks as ``CNNClassifier``).

    >>> from sparkdl.estimators import CNNRegressor
    >>> model = CNNRegressor(inputShape=[1, 256], filters=[16, 16], kernelSize=3).fit(signals)
    """

    _model_class = CNNRegressorModel
    _task = "regression"
