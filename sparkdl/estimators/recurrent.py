"""Recurrent estimators (architecture ``rnn``): LSTM, GRU, plain RNN or peephole LSTM cells.

Features hold a window flattened time-major; ``inputShape=[timesteps,
features]`` restores it (``SequenceWindower`` writes exactly that layout).
With ``returnSequences`` the dense head runs at every step and the label is
an array of one value (or class) per step.
"""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters

from sparkdl.estimators.base import NamedTorchEstimator, TorchModel
from sparkdl.estimators.params import add_accessors

RNN_ARGUMENTS = ("cell", "hiddenSize", "numLayers", "bidirectional", "returnSequences")


class _RNNParams(Params):
    cell = Param(Params._dummy(), "cell", "lstm, gru, rnn or peephole_lstm", typeConverter=TypeConverters.toString)
    hiddenSize = Param(Params._dummy(), "hiddenSize", "units of each recurrent layer", typeConverter=TypeConverters.toInt)
    numLayers = Param(Params._dummy(), "numLayers", "stacked recurrent layers", typeConverter=TypeConverters.toInt)
    bidirectional = Param(Params._dummy(), "bidirectional", "also read the sequence backwards (separate weights)", typeConverter=TypeConverters.toBoolean)
    returnSequences = Param(Params._dummy(), "returnSequences", "predict at every time step (True) or from the last step only", typeConverter=TypeConverters.toBoolean)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(cell="lstm", hiddenSize=64, numLayers=1, bidirectional=False, returnSequences=False)


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
        if not self.getReturnSequences() or self.getTask() == "classification":
            return shape, output_size
        steps = shape[0]
        if not self._label_is_array(dataset) or output_size % steps:
            raise ValueError(
                f"labelCol column {self.getLabelCol()!r}: with returnSequences the label must be an "
                f"array with a multiple of {steps} values (one or more per time step), found {output_size}"
            )
        return shape, output_size // steps


@add_accessors
class RNNRegressorModel(TorchModel, _RNNParams):
    """A fitted ``RNNRegressor``: ``prediction`` is a double, or an array (multi-step or per-step)."""


@add_accessors
class RNNRegressor(_RNNEstimator):
    """Sequence regression: the next value, several future values (array label) or a value per step.

    >>> from sparkdl.estimators import RNNRegressor
    >>> windows = SequenceWindower(inputCol="series", windowSize=32, targetMode="value").transform(df)
    >>> model = RNNRegressor(inputShape=[32, 1], hiddenSize=32, epochs=20).fit(windows)
    """

    _model_class = RNNRegressorModel
    _task = "regression"


@add_accessors
class RNNClassifierModel(TorchModel, _RNNParams):
    """A fitted ``RNNClassifier``."""


@add_accessors
class RNNClassifier(_RNNEstimator):
    """Sequence classification from the last time step (both directions when bidirectional).

    >>> from sparkdl.estimators import RNNClassifier
    >>> model = RNNClassifier(inputShape=[50, 3], cell="gru", bidirectional=True).fit(df)
    """

    _model_class = RNNClassifierModel
    _task = "classification"

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.getReturnSequences():
            raise ValueError("returnSequences: RNNClassifier classifies whole sequences; expected False, found True")
