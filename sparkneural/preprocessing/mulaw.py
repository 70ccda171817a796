"""Mu-law companding of audio samples, as Spark Transformers (WaveNet's input coding).

For a sample x in [-1, 1]:

    f(x)     = sign(x) * ln(1 + mu*|x|) / ln(1 + mu)          (companding, [-1, 1] -> [-1, 1])
    f_inv(y) = sign(y) / mu * ((1 + mu)^|y| - 1)              (its inverse)

Quantisation maps f(x) to one of mu + 1 integer classes 0..mu with the rule

    k = floor((f(x) + 1) / 2 * mu + 0.5)

i.e. class k owns the companded values within half a step (1/mu) of its centre
y_k = 2k/mu - 1 (the two end classes own half a step). Decoding maps k back to
y_k and applies f_inv, so the round-trip error of a sample is at most the
spread of f_inv over its bin: small near 0, larger near +-1, by design.

Both Transformers are plain Spark column expressions (``F.transform`` for
arrays), no Python UDF; they save and load with Spark ML's default persistence
and work inside a ``Pipeline``.
"""

from __future__ import annotations

import math

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkneural.data.schema import column_type

FLOAT_TYPES = (T.FloatType, T.DoubleType)
INTEGER_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


class _MuLawParams(HasInputCol, HasOutputCol):
    mu = Param(Params._dummy(), "mu", "mu of the companding law; classes are 0..mu (> 0)", typeConverter=TypeConverters.toInt)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(mu=255)

    def getMu(self) -> int:
        """Gets the value of mu or its default value."""
        return self.getOrDefault(self.mu)

    def setMu(self, value: int):
        """Sets the value of mu."""
        return self._set(mu=value)

    def setInputCol(self, value: str):
        """Sets the value of inputCol."""
        return self._set(inputCol=value)

    def setOutputCol(self, value: str):
        """Sets the value of outputCol."""
        return self._set(outputCol=value)

    def _checked_input(self, dataset: DataFrame, accepted: tuple, expected: str) -> tuple[str, T.DataType, bool]:
        """Check the Params and the input column's type; return (column, element type, is array)."""
        owner = type(self).__name__
        if not self.isDefined(self.inputCol):
            raise ValueError(f"{owner}: inputCol is not set")
        if self.getMu() < 1:
            raise ValueError(f"{owner}: mu must be > 0, found {self.getMu()}")
        name = self.getInputCol()
        data_type = column_type(dataset, name, f"{owner}.inputCol")
        is_array = isinstance(data_type, T.ArrayType)
        element = data_type.elementType if is_array else data_type
        if not isinstance(element, accepted):
            raise TypeError(
                f"{owner}: inputCol {name!r} must be {expected} or an array of them; "
                f"found {data_type.simpleString()}"
            )
        return name, element, is_array


class MuLawEncoder(Transformer, _MuLawParams, DefaultParamsReadable, DefaultParamsWritable):
    """Mu-law compand (and by default quantise) samples in [-1, 1].

    The input is a float/double column or an array<float|double> column (e.g.
    the ``samples`` of ``read_wav``). With ``quantize=True`` the output is the
    integer class 0..mu (int, or array<int>); with ``quantize=False`` it is
    the companded value f(x) in the input's float type.

    Values outside [-1, 1] are clipped with ``clip=True``; with
    ``clip=False`` ``transform`` first counts them in one aggregate pass and
    raises a ValueError naming the column when there are any. NaN counts as
    out of range there, and becomes null with ``clip=True``. Nulls (rows or
    array elements) stay null.

    >>> from sparkneural.preprocessing import MuLawEncoder
    >>> audio_df = spark.createDataFrame([([-1.0, -0.1, 0.0, 0.1, 1.0],)], "samples array<double>")
    >>> enc = MuLawEncoder(inputCol="samples", outputCol="classes")   # mu=255
    >>> enc.transform(audio_df).first()["classes"]       # array<int>, 0..255
    [0, 52, 128, 203, 255]
    """

    quantize = Param(Params._dummy(), "quantize", "output integer classes 0..mu (True) or the companded float (False)", typeConverter=TypeConverters.toBoolean)
    clip = Param(Params._dummy(), "clip", "clip inputs to [-1, 1] (True) or raise a ValueError on values outside (False)", typeConverter=TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, mu: int = 255,
                 quantize: bool = True, clip: bool = True) -> None:
        super().__init__()
        self._setDefault(quantize=True, clip=True)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str | None = None, outputCol: str | None = None, mu: int = 255,
                  quantize: bool = True, clip: bool = True) -> "MuLawEncoder":
        """Sets the Params given as keyword arguments."""
        return self._set(**self._input_kwargs)

    def getQuantize(self) -> bool:
        """Gets the value of quantize or its default value."""
        return self.getOrDefault(self.quantize)

    def setQuantize(self, value: bool) -> "MuLawEncoder":
        """Sets the value of quantize."""
        return self._set(quantize=value)

    def getClip(self) -> bool:
        """Gets the value of clip or its default value."""
        return self.getOrDefault(self.clip)

    def setClip(self, value: bool) -> "MuLawEncoder":
        """Sets the value of clip."""
        return self._set(clip=value)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        name, element, is_array = self._checked_input(dataset, FLOAT_TYPES, "float or double")
        mu, quantize, clip = self.getMu(), self.getQuantize(), self.getClip()
        if not clip:
            _check_in_range(dataset, name, is_array, type(self).__name__)

        def clipped(x: Column) -> Column:
            x = x.cast("double")
            # least/greatest skip nulls and rank NaN above every number: handle both first.
            return F.when(x.isNull() | F.isnan(x), F.lit(None)).otherwise(F.greatest(F.least(x, F.lit(1.0)), F.lit(-1.0)))

        def encode(x: Column) -> Column:
            y = F.signum(x) * F.log1p(F.abs(x) * float(mu)) / math.log1p(mu)
            if quantize:
                return F.floor((y + 1.0) / 2.0 * float(mu) + 0.5).cast("int")
            return y.cast(element)

        column = F.col(name)
        if not is_array:
            return dataset.withColumn(self.getOutputCol(), encode(clipped(column) if clip else column.cast("double")))
        # Lambdas are evaluated without code generation, and a sub-expression used twice is evaluated
        # twice: clipping in its own pass keeps the formula from repeating it (1.3x faster, 4M samples).
        if not clip:
            return dataset.withColumn(self.getOutputCol(), F.transform(column, lambda x: encode(x.cast("double"))))
        return dataset.withColumn(self.getOutputCol(), F.transform(F.transform(column, clipped), encode))


class MuLawDecoder(Transformer, _MuLawParams, DefaultParamsReadable, DefaultParamsWritable):
    """Map mu-law classes (or companded values) back to samples in [-1, 1].

    An integer column (or array) holds classes 0..mu: each decodes to the
    centre of its bin, 2k/mu - 1, through the inverse law. A float/double
    column (or array) holds companded values f(x) (``MuLawEncoder`` with
    ``quantize=False``) and only the inverse is applied. The output is double
    (or array<double>); nulls stay null. A class outside 0..mu fails the job
    that evaluates it, with a message naming the column (no extra pass).

    >>> from sparkneural.preprocessing import MuLawDecoder, MuLawEncoder
    >>> audio_df = spark.createDataFrame([([-1.0, -0.1, 0.0, 0.1, 1.0],)], "samples array<double>")
    >>> enc = MuLawEncoder(inputCol="samples", outputCol="classes")
    >>> dec = MuLawDecoder(inputCol="classes", outputCol="decoded")
    >>> decoded = dec.transform(enc.transform(audio_df)).first()["decoded"]   # array<double>
    >>> [round(x, 3) for x in decoded]
    [-1.0, -0.101, 0.0, 0.101, 1.0]
    """

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, mu: int = 255) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str | None = None, outputCol: str | None = None, mu: int = 255) -> "MuLawDecoder":
        """Sets the Params given as keyword arguments."""
        return self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        name, element, is_array = self._checked_input(dataset, FLOAT_TYPES + INTEGER_TYPES, "integer classes, float or double")
        mu = self.getMu()
        classes = isinstance(element, INTEGER_TYPES)
        message = f"MuLawDecoder: column {name!r} has a class outside 0..{mu}"

        def decode(v: Column) -> Column:
            y = v.cast("double") * (2.0 / mu) - 1.0 if classes else v.cast("double")
            x = F.signum(y) / float(mu) * (F.pow(F.lit(1.0 + mu), F.abs(y)) - 1.0)
            if classes:
                x = F.when((v < 0) | (v > mu), F.raise_error(F.lit(message))).otherwise(x)
            return x

        column = F.col(name)
        return dataset.withColumn(self.getOutputCol(), F.transform(column, decode) if is_array else decode(column))


def _check_in_range(dataset: DataFrame, name: str, is_array: bool, owner: str) -> None:
    """One aggregate pass: raise a ValueError naming ``name`` if it has values outside [-1, 1] or NaN."""

    def outside(v: Column) -> Column:
        v = v.cast("double")
        return F.when(F.isnan(v) | (F.abs(v) > 1.0), 1).otherwise(0)

    column = F.col(name)
    per_row = F.aggregate(column, F.lit(0), lambda acc, v: acc + outside(v)) if is_array else outside(column)
    count = dataset.agg(F.sum(per_row).alias("n")).first()["n"] or 0
    if count:
        raise ValueError(
            f"{owner}: column {name!r} has {count} value(s) outside [-1, 1] (or NaN) and clip=False; "
            "scale the samples to [-1, 1] or set clip=True"
        )
