"""Convolutional estimators: LeNet-5 style for images, a 1-D conv net for signals.

The input shape picks the network: ``[channels, h, w]`` builds ``lenet``,
``[channels, length]`` builds ``conv1d``.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Params

from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import declare, declared_defaults, stage
from sparkneural.training.declared import Declared, to_int, to_int_list, to_string


@declare(
    Declared("filters", "output channels of each convolution", to_int_list, [20, 50]),
    Declared("kernelSize", "width of the convolution kernels", to_int, 5),
    Declared("padding", "same or valid (1-D also causal)", to_string, "same"),
    Declared("poolSize", "max-pooling window after each 2-D convolution", to_int, 2),
    Declared("denseUnits", "width of the dense layer before the output (1-D: 0 for none)", to_int, 500),
    Declared("stride", "stride of the 1-D convolutions", to_int, 1),
    Declared("dilation", "dilation of the 1-D convolutions", to_int, 1),
)
class _CNNParams(Params):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _CNNParams)


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

    def _architecture_params(self, summary) -> dict[str, Any]:
        params = super()._architecture_params(summary)
        names = ["filters", "kernelSize", "padding", "denseUnits"]
        names += ["stride", "dilation"] if len(self.getInputShape()) == 2 else ["poolSize"]
        for name in names:
            params.setdefault(name, self.getOrDefault(name))
        return params


@stage
class CNNClassifierModel(TorchModel, _CNNParams):
    """A fitted ``CNNClassifier``.

    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import CNNClassifier
    >>> df = digits(spark).limit(100)
    >>> model = CNNClassifier(inputShape=[1, 8, 8], filters=[4, 8], kernelSize=3, denseUnits=16,
    ...                       epochs=1, backend="local", verbose=0).fit(df)
    >>> model.architectureSpec["architecture"], model.numClasses
    ('lenet', 10)
    """


@stage
class CNNClassifier(_CNNEstimator):
    """A convolutional classifier; ``inputShape`` is required.

    conv 20 5x5 (same) -> ReLU -> max-pool 2 -> conv 50 5x5 -> ReLU -> max-pool 2
    -> dense 500 -> ReLU -> classes, for ``[channels, h, w]``; a stack of 1-D
    convolutions with global pooling for ``[channels, length]``.

    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import CNNClassifier
    >>> df = digits(spark).limit(100)               # 8x8 images, one channel
    >>> clf = CNNClassifier(inputShape=[1, 8, 8], filters=[4, 8], kernelSize=3, denseUnits=16,
    ...                     epochs=2, backend="local", verbose=0)
    >>> model = clf.fit(df)
    >>> sorted(model.transform(df).columns)
    ['features', 'label', 'prediction', 'probability', 'rawPrediction']
    """

    _model_class = CNNClassifierModel
    _task_name = "classification"


@stage
class CNNRegressorModel(TorchModel, _CNNParams):
    """A fitted ``CNNRegressor``.

    >>> from sparkneural.estimators import CNNRegressor
    >>> df = spark.createDataFrame([([float(i + t) for t in range(16)], float(i)) for i in range(16)],
    ...                            "features array<double>, label double")
    >>> model = CNNRegressor(inputShape=[1, 16], filters=[4], kernelSize=3, denseUnits=0,
    ...                      epochs=1, backend="local", verbose=0).fit(df)
    >>> model.architectureSpec["architecture"], model.transform(df).select("prediction").dtypes
    ('conv1d', [('prediction', 'double')])
    """


@stage
class CNNRegressor(_CNNEstimator):
    """A convolutional regressor (same networks as ``CNNClassifier``).

    >>> import math
    >>> from sparkneural.estimators import CNNRegressor
    >>> signals = spark.createDataFrame([([math.sin(0.2 * (i + t)) for t in range(32)], math.sin(0.2 * (i + 32)))
    ...                                  for i in range(48)], "features array<double>, label double")
    >>> model = CNNRegressor(inputShape=[1, 32], filters=[4, 4], kernelSize=3, denseUnits=8,
    ...                      epochs=2, backend="local", verbose=0).fit(signals)
    >>> model.transform(signals).select("prediction").count()
    48
    """

    _model_class = CNNRegressorModel
    _task_name = "regression"
