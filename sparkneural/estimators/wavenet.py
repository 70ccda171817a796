"""WaveNet as a Spark estimator: teacher forcing on windows of mu-law classes, then audio generation.

Rows hold windows of classes (array<int>, e.g. ``MuLawEncoder`` then
``SequenceWindower``); there is no label: the targets are the window shifted
by one step. ``WaveNetModel.transform`` adds the most likely next class
(``prediction``) and the window's log-likelihood (``logLikelihood``, natural
log, summed over the T - 1 scored steps); ``generate`` writes new audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from pyspark.ml.param import Params
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkneural.data import arrow
from sparkneural.data.schema import DataSummary, column_type, is_numeric_array
from sparkneural.estimators.base import NamedTorchEstimator, TorchModel
from sparkneural.estimators.params import declare, declared_defaults, stage
from sparkneural.training.declared import Declared, Interval, optional, to_int, to_string

NETWORK_INPUT = "__sparkneural_wavenet_input"
WAVENET_ARGUMENTS = ("layersPerBlock", "blocks", "kernelSize", "residualChannels", "dilationChannels", "skipChannels")


def mulaw_encode(samples: np.ndarray, mu: int = 255) -> np.ndarray:
    """Floats in [-1, 1] to classes 0..mu (the same bins as ``MuLawEncoder``)."""
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.floor((companded + 1.0) / 2.0 * mu + 0.5).astype(np.int64)


def mulaw_decode(classes: np.ndarray, mu: int = 255) -> np.ndarray:
    """Classes 0..mu to floats in [-1, 1]: the bin centre, then the inverse companding."""
    y = 2.0 * np.asarray(classes, dtype=np.float64) / mu - 1.0
    return np.sign(y) / mu * ((1.0 + mu) ** np.abs(y) - 1.0)


@dataclass(frozen=True)
class _WaveNetSummary(DataSummary):
    conditions: int | None = None  # condition ids seen in the data: the largest + 1


@declare(
    Declared("layersPerBlock", "dilated layers per block; dilations 1, 2, ..., 2^(layersPerBlock-1)", to_int, 10),
    Declared("blocks", "times the block of dilations is repeated", to_int, 3),
    Declared("kernelSize", "width of the causal convolutions", to_int, 2),
    Declared("residualChannels", "channels of the residual stream", to_int, 32),
    Declared("dilationChannels", "channels of the gated units", to_int, 32),
    Declared("skipChannels", "channels of the skip connections and the head", to_int, 64),
    Declared("mu", "mu-law parameter; the network predicts mu + 1 classes", to_int, 255, Interval(1)),
    Declared("conditionCol", "integer column of a global condition (e.g. speaker id); None: unconditioned", optional(to_string), None),
    Declared("numConditions", "number of condition ids (None: the largest id + 1)", optional(to_int), None, Interval(1, optional=True)),
    Declared("logLikelihoodCol", "output column: log-likelihood of each window", to_string, "logLikelihood"),
)
class _WaveNetParams(Params):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, _WaveNetParams)


def _check_classes_type(dataset: DataFrame, column: str) -> None:
    data_type = column_type(dataset, column, "featuresCol")
    if not is_numeric_array(data_type):
        found = "vector" if data_type.typeName() == "vector" else data_type.simpleString()
        raise TypeError(f"featuresCol: column {column!r} must be an array of mu-law classes (array<int>); found {found}")


class _ConditionedInput:
    """Both estimator and model feed ``[classes..., condition id]`` when conditioned."""

    def _network_input(self, dataset: DataFrame) -> tuple[DataFrame, str]:
        features, condition = F.col(self.getFeaturesCol()).cast("array<int>"), self.getConditionCol()
        if condition is None:
            return dataset.withColumn(NETWORK_INPUT, features), NETWORK_INPUT
        return dataset.withColumn(NETWORK_INPUT, F.concat(features, F.array(F.col(condition).cast("int")))), NETWORK_INPUT


@stage
class WaveNetModel(_ConditionedInput, TorchModel, _WaveNetParams):
    """A fitted ``WaveNet``: scores windows (``transform``) and generates audio (``generate``).

    >>> from sparkneural.estimators import WaveNet
    >>> windows = spark.createDataFrame([([(i + t) % 8 for t in range(16)],) for i in range(16)], "features array<int>")
    >>> model = WaveNet(layersPerBlock=2, blocks=1, residualChannels=4, dilationChannels=4, skipChannels=4,
    ...                 mu=7, epochs=1, backend="local", verbose=0).fit(windows)
    >>> model.transform(windows).columns
    ['features', 'prediction', 'logLikelihood']
    >>> samples = model.generate(32, mode="temperature", temperature=0.8, seed=1)   # write_wav(samples, path, rate)
    >>> samples.shape, samples.dtype
    ((32,), dtype('float32'))
    """

    def _network_input(self, dataset: DataFrame) -> tuple[DataFrame, str]:
        """The network's input, failing the job on a window the model cannot score (checked in the JVM)."""
        name, condition, mu = self.getFeaturesCol(), self.getConditionCol(), self.getMu()
        _check_classes_type(dataset, name)
        frame, column = super()._network_input(dataset)
        steps = self.architectureSpec["inputShape"][0] - (0 if condition is None else 1)
        where = f"WaveNetModel: featuresCol column {name!r}"
        window = F.col(name)
        outside = F.exists(window, lambda x: x.isNull() | (x < 0) | (x > mu) | (x != F.floor(x)))
        checked = (
            F.when(window.isNull(), F.col(column))
            .when(F.size(window) != steps, F.raise_error(F.concat(
                F.lit(f"{where}: expected windows of {steps} classes as in fit, found "), F.size(window).cast("string"))))
            .when(outside, F.raise_error(F.lit(f"{where}: expected integer mu-law classes in 0..{mu}, found a value outside")))
        )
        if condition is not None:
            limit = self.architectureSpec["architectureParams"].get("numConditions", 1)
            ids = F.col(condition)
            checked = checked.when(ids.isNull() | (ids < 0) | (ids >= limit), F.raise_error(F.concat(
                F.lit(f"WaveNetModel: conditionCol column {condition!r}: expected ids in 0..{limit - 1}, found "),
                F.coalesce(ids.cast("string"), F.lit("null")))))
        return frame.withColumn(column, checked.otherwise(F.col(column))), column

    def _output_columns(self):
        columns = [
            ("prediction", self.getPredictionCol(), arrow.doubles, T.DoubleType()),
            ("logLikelihood", self.getLogLikelihoodCol(), arrow.doubles, T.DoubleType()),
        ]
        return [c for c in columns if c[1]]

    @property
    def receptiveField(self) -> int:
        return self.network().receptive_field

    def generate(
        self,
        numSamples: int,
        prime: Sequence[float] | np.ndarray | None = None,
        mode: str = "sample",
        temperature: float = 1.0,
        topK: int | None = None,
        seed: int = 0,
        condition: int | None = None,
        fast: bool = True,
    ) -> np.ndarray:
        """``numSamples`` new audio samples (floats in [-1, 1]) after ``prime`` (floats in [-1, 1]).

        ``mode``: "sample", "greedy", "temperature", "top_k" or "mean". ``fast=True``
        keeps each layer's past activations in queues (one step per layer per
        sample, in numpy on the CPU: per-call overhead dominates such small steps);
        ``fast=False`` recomputes the receptive field for each sample on the model's ``device``.
        """
        from sparkneural import devices

        mu = self.getMu()
        classes = None if prime is None else mulaw_encode(prime, mu)
        # float64 makes the fast and naive generators agree sample for sample.
        net = self.network().double().to(devices.resolve(self.getDevice()))
        generated = net.generate(numSamples, prime=classes, mode=mode, temperature=temperature, topK=topK,
                                 seed=seed, condition=condition, fast=fast)
        return mulaw_decode(generated, mu).astype(np.float32)


@stage
class WaveNet(_ConditionedInput, NamedTorchEstimator, _WaveNetParams):
    """WaveNet trained with teacher forcing on windows of mu-law classes (no label column).

    >>> import math
    >>> from sparkneural.estimators import WaveNet
    >>> from sparkneural.preprocessing import MuLawEncoder, SequenceWindower
    >>> audio = spark.createDataFrame([([math.sin(0.3 * t) for t in range(256)],)], "samples array<double>")
    >>> encoded = MuLawEncoder(inputCol="samples", outputCol="classes", mu=15).transform(audio)
    >>> windows = SequenceWindower(inputCol="classes", windowSize=32, step=8).transform(encoded)
    >>> model = WaveNet(layersPerBlock=3, blocks=1, residualChannels=4, dilationChannels=4, skipChannels=8,
    ...                 mu=15, epochs=2, backend="local", verbose=0).fit(windows)
    >>> model.receptiveField, len(model.history)
    (9, 2)
    """

    _model_class = WaveNetModel
    _architecture_name, _task_name = "wavenet", "next_step"
    _architecture_param_names = WAVENET_ARGUMENTS

    def _summarize(self, dataset: DataFrame):
        _check_classes_type(dataset, self.getFeaturesCol())
        condition = self.getConditionCol()
        if condition is not None:
            data_type = column_type(dataset, condition, "conditionCol")
            if not isinstance(data_type, (T.IntegerType, T.LongType, T.ShortType, T.ByteType)):
                raise TypeError(f"conditionCol: column {condition!r} must be an integer column; found {data_type.simpleString()}")
        summary = super()._summarize(dataset)
        column = F.col(self.getFeaturesCol())
        bounds = [
            F.min(F.array_min(column)).alias("low"),
            F.max(F.array_max(column)).alias("high"),
            F.sum(F.size(F.filter(column, lambda x: x != F.floor(x)))).alias("fractional"),
        ]
        if condition is not None:
            bounds += [F.min(condition).alias("clow"), F.max(condition).alias("chigh")]
        row = dataset.agg(*bounds).first()
        mu = self.getMu()
        if row["fractional"]:
            raise ValueError(
                f"featuresCol column {self.getFeaturesCol()!r}: expected integer mu-law classes, "
                f"found {row['fractional']} non-integral values"
            )
        if row["low"] < 0 or row["high"] > mu:
            raise ValueError(
                f"featuresCol column {self.getFeaturesCol()!r}: expected mu-law classes in 0..{mu}, "
                f"found values from {row['low']:g} to {row['high']:g}"
            )
        if condition is not None:
            limit = self.getNumConditions()
            if row["clow"] is None or row["clow"] < 0 or (limit is not None and row["chigh"] >= limit):
                raise ValueError(
                    f"conditionCol column {condition!r}: expected ids in 0..{(limit or 0) - 1 if limit else 'n'} with no nulls, "
                    f"found values from {row['clow']} to {row['chigh']}"
                )
            return _WaveNetSummary(**vars(summary), conditions=limit or int(row["chigh"]) + 1)
        return summary

    def _shapes(self, dataset: DataFrame, summary):
        steps = summary.lengths[self.getFeaturesCol()]
        if steps < 2:
            raise ValueError(f"featuresCol column {self.getFeaturesCol()!r}: expected windows of at least 2 classes, found {steps}")
        shape = self.getInputShape()
        if shape is not None and list(shape) != [steps]:
            raise ValueError(f"inputShape: WaveNet reads it from the windows; expected None or [{steps}], found {shape}")
        extra = 1 if self.getConditionCol() is not None else 0
        return (steps + extra,), self.getMu() + 1

    def _architecture_params(self, summary) -> dict[str, Any]:
        params = super()._architecture_params(summary)
        if self.getConditionCol() is not None:
            params.setdefault("numConditions", getattr(summary, "conditions", None) or self.getNumConditions() or 1)
        return params

    def _materialize(self, dataset: DataFrame, summary):
        from sparkneural.data.materialize import materialize

        frame, column = self._network_input(dataset)
        return materialize(frame, column, None, self._validation_flag(), self.getDataDir())
