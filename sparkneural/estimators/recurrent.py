"""Recurrent estimators (architecture ``rnn``): LSTM, GRU, plain RNN or peephole LSTM cells.

Features hold a window flattened time-major; ``inputShape=[timesteps,
features]`` restores it (``SequenceWindower`` writes exactly that layout).
With ``returnSequences`` the dense head runs at every step and the label is
an array of one value (or class) per step.
"""

from __future__ import annotations

from pyspark.ml.param import Params

from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import declare, declared_defaults, stage
from sparkneural.training.declared import Declared, to_bool, to_int, to_string

RNN_ARGUMENTS = ("cell", "hiddenSize", "numLayers", "bidirectional", "returnSequences")


@declare(
    Declared("cell", "lstm, gru, rnn or peephole_lstm", to_string, "lstm"),
    Declared("hiddenSize", "units of each recurrent layer", to_int, 64),
    Declared("numLayers", "stacked recurrent layers", to_int, 1),
    Declared("bidirectional", "also read the sequence backwards (separate weights)", to_bool, False),
    Declared("returnSequences", "predict at every time step (True) or from the last step only", to_bool, False),
)
class _RNNParams(Params):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _RNNParams)


class _RNNEstimator(NamedTorchEstimator, _RNNParams):
    _architecture_name = "rnn"
    _architecture_param_names = RNN_ARGUMENTS

    def _validate_params(self) -> None:
        super()._validate_params()
        shape = self.getInputShape()
        if shape is None or len(shape) != 2:
            raise ValueError(f"inputShape: expected [timesteps, features], found {shape}")

    def _shapes(self, dataset, summary):
        shape, output_size = super()._shapes(dataset, summary)
        if not self.getReturnSequences() or self._training_task().is_classifier:
            return shape, output_size
        steps = shape[0]
        if not self._label_is_array(dataset) or output_size % steps:
            raise ValueError(
                f"labelCol column {self.getLabelCol()!r}: with returnSequences the label must be an "
                f"array with a multiple of {steps} values (one or more per time step), found {output_size}"
            )
        return shape, output_size // steps


@stage
class RNNRegressorModel(TorchModel, _RNNParams):
    """A fitted ``RNNRegressor``: ``prediction`` is a double, or an array (multi-step or per-step).

    >>> from sparkneural.estimators import RNNRegressor
    >>> df = spark.createDataFrame([([float(i + t) for t in range(6)], [float(i + 6), float(i + 7)]) for i in range(16)],
    ...                            "features array<double>, label array<double>")
    >>> model = RNNRegressor(inputShape=[6, 1], hiddenSize=4, epochs=1, backend="local", verbose=0).fit(df)
    >>> model.transform(df).select("prediction").dtypes      # the next two values
    [('prediction', 'array<float>')]
    """

    def _output_columns(self):
        if not self.architectureSpec["architectureParams"].get("returnSequences"):
            return super()._output_columns()
        from pyspark.sql import types as T

        from sparkneural.data import arrow

        # one value (or several) per time step: always an array, even with one output per step
        return [("prediction", self.getPredictionCol(), arrow.float_lists, T.ArrayType(T.FloatType()))]


@stage
class RNNRegressor(_RNNEstimator):
    """Sequence regression: the next value, several future values (array label) or a value per step.

    >>> import math
    >>> from sparkneural.estimators import RNNRegressor
    >>> from sparkneural.preprocessing import SequenceWindower
    >>> df = spark.createDataFrame([([math.sin(0.3 * t) for t in range(60)],)], "series array<double>")
    >>> windows = SequenceWindower(inputCol="series", windowSize=8, targetMode="value").transform(df)
    >>> model = RNNRegressor(inputShape=[8, 1], hiddenSize=8, epochs=2, backend="local", verbose=0).fit(windows)
    >>> model.transform(windows).select("windowStart", "label", "prediction").count()
    52
    """

    _model_class = RNNRegressorModel
    _task_name = "regression"


@stage
class RNNClassifierModel(TorchModel, _RNNParams):
    """A fitted ``RNNClassifier``.

    >>> from sparkneural.estimators import RNNClassifier
    >>> df = spark.createDataFrame([([float((i + t) % 2) for t in range(6)], float(i % 2)) for i in range(16)],
    ...                            "features array<double>, label double")
    >>> model = RNNClassifier(inputShape=[6, 1], hiddenSize=4, epochs=1, backend="local", verbose=0).fit(df)
    >>> type(model).__name__, model.numClasses
    ('RNNClassifierModel', 2)
    """


@stage
class RNNClassifier(_RNNEstimator):
    """Sequence classification from the last time step (both directions when bidirectional).

    >>> from sparkneural.estimators import RNNClassifier
    >>> df = spark.createDataFrame([([float((i + t) % 3 == 0) for t in range(12)], float(i % 3 == 0))
    ...                             for i in range(36)], "features array<double>, label double")
    >>> model = RNNClassifier(inputShape=[6, 2], cell="gru", hiddenSize=8, bidirectional=True,
    ...                       epochs=2, backend="local", verbose=0).fit(df)
    >>> sorted(model.transform(df).columns)
    ['features', 'label', 'prediction', 'probability', 'rawPrediction']
    """

    _model_class = RNNClassifierModel
    _task_name = "classification"

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.getReturnSequences():
            raise ValueError("returnSequences: RNNClassifier classifies whole sequences; expected False, found True")
