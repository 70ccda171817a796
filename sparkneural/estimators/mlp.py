"""Multi-layer perceptron estimators (architecture ``mlp``)."""

from __future__ import annotations

from pyspark.ml.param import Params

from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import declare, declared_defaults, stage
from sparkneural.training.declared import Declared, to_bool, to_int_list, to_string


@declare(
    Declared("hiddenLayers", "widths of the hidden layers", to_int_list, [100]),
    Declared("activation", "relu, tanh, sigmoid or gelu", to_string, "relu"),
    Declared("blockType", "plain, residual, highway or dense", to_string, "plain"),
    Declared("batchNorm", "batch normalisation after each hidden layer", to_bool, False),
)
class _MLPParams(Params):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _MLPParams)


MLP_ARGUMENTS = ("hiddenLayers", "activation", "blockType", "batchNorm")


@stage
class MLPClassifierModel(TorchModel, _MLPParams):
    """A fitted ``MLPClassifier``: adds ``prediction``, ``rawPrediction`` and ``probability``.

    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import MLPClassifier
    >>> df = digits(spark).limit(100)
    >>> model = MLPClassifier(hiddenLayers=[16], epochs=1, backend="local", verbose=0).fit(df)
    >>> type(model).__name__, model.numClasses
    ('MLPClassifierModel', 10)
    """


@stage
class MLPClassifier(NamedTorchEstimator, _MLPParams):
    """A multi-layer perceptron classifier trained data-parallel on Spark.

    Labels are class indices 0..k-1 (double or integer); features are
    array<float>/array<double> or MLlib vectors. ``blockType`` picks plain,
    residual, highway or densely connected hidden blocks.

    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import MLPClassifier
    >>> df = digits(spark).limit(100)               # features: 64 pixels, label: 0..9
    >>> clf = MLPClassifier(hiddenLayers=[16, 16], blockType="residual", epochs=2, backend="local", verbose=0)
    >>> model = clf.fit(df)                         # backend="horovod", numProc=2: two ranks
    >>> model.transform(df).select("label", "prediction").count()
    100
    """

    _model_class = MLPClassifierModel
    _architecture_name, _task_name, _architecture_param_names = "mlp", "classification", MLP_ARGUMENTS


@stage
class MLPRegressorModel(TorchModel, _MLPParams):
    """A fitted ``MLPRegressor``: adds ``prediction`` (double, or array<float> for array labels).

    >>> from sparkneural.estimators import MLPRegressor
    >>> df = spark.createDataFrame([([x / 8], [x / 4, -x / 4]) for x in range(16)],
    ...                            "features array<double>, label array<double>")
    >>> model = MLPRegressor(hiddenLayers=[4], epochs=1, backend="local", verbose=0).fit(df)
    >>> model.transform(df).select("prediction").dtypes      # two outputs
    [('prediction', 'array<float>')]
    """


@stage
class MLPRegressor(NamedTorchEstimator, _MLPParams):
    """A multi-layer perceptron regressor; the label is a number or an array (several outputs).

    >>> from sparkneural.estimators import MLPRegressor
    >>> df = spark.createDataFrame([([x / 32, 1 - x / 32], 2 * x / 32) for x in range(32)],
    ...                            "features array<double>, label double")
    >>> model = MLPRegressor(hiddenLayers=[8], epochs=2, backend="local", verbose=0).fit(df)
    >>> model.transform(df).select("label", "prediction").dtypes
    [('label', 'double'), ('prediction', 'double')]
    """

    _model_class = MLPRegressorModel
    _architecture_name, _task_name, _architecture_param_names = "mlp", "regression", MLP_ARGUMENTS
