"""Input checks that run before any training job: schema first, then one aggregate.

Everything wrong with the data is found in at most one pass (a single
``agg``), never by collecting it, and reported in one error that names the
column, what was expected and what was found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

NUMERIC_TYPES = (T.FloatType, T.DoubleType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)


def _type_name(data_type: T.DataType) -> str:
    return data_type.simpleString() if not isinstance(data_type, VectorUDT) else "vector"


def column_type(df: DataFrame, column: str, role: str) -> T.DataType:
    """The type of ``column``; a ValueError names it and lists the columns when it is missing."""
    if column not in df.columns:
        raise ValueError(
            f"{role}: column {column!r} not found; the DataFrame has columns {df.columns}"
        )
    return df.schema[column].dataType


def is_numeric_array(data_type: T.DataType) -> bool:
    return isinstance(data_type, T.ArrayType) and isinstance(data_type.elementType, NUMERIC_TYPES)


def check_features_type(df: DataFrame, column: str, role: str = "featuresCol") -> None:
    data_type = column_type(df, column, role)
    if not (isinstance(data_type, VectorUDT) or is_numeric_array(data_type)):
        raise TypeError(
            f"{role}: column {column!r} must be array<float>, array<double> or an MLlib "
            f"vector; found {_type_name(data_type)}"
        )


def check_label_type(df: DataFrame, column: str, allow_array: bool, role: str = "labelCol") -> None:
    data_type = column_type(df, column, role)
    if isinstance(data_type, NUMERIC_TYPES):
        return
    if allow_array and (is_numeric_array(data_type) or isinstance(data_type, VectorUDT)):
        return
    expected = "a numeric column" + (" or a numeric array" if allow_array else "")
    raise TypeError(f"{role}: column {column!r} must be {expected}; found {_type_name(data_type)}")


def as_array(df: DataFrame, column: str) -> Column:
    """The column as array<...>: MLlib vectors are converted on the JVM side."""
    if isinstance(df.schema[column].dataType, VectorUDT):
        return vector_to_array(F.col(column), "float32")
    return F.col(column)


def non_finite_count(array: Column) -> Column:
    """Number of null, NaN or infinite elements in an array column."""
    return F.size(
        F.filter(
            array,
            lambda x: x.isNull() | F.isnan(x) | (F.abs(x) == F.lit(float("inf"))),
        )
    )


@dataclass(frozen=True)
class ColumnCheck:
    """What one column must satisfy. ``length`` is the expected array length."""

    column: str
    role: str
    is_array: bool
    length: int | None = None
    num_classes: int | None = None  # integral values in 0..num_classes-1
    integral: bool = False


@dataclass(frozen=True)
class DataSummary:
    rows: int
    lengths: dict[str, int]  # array length per array column
    min_value: dict[str, float]  # per scalar column
    max_value: dict[str, float]


def check_values(df: DataFrame, checks: Sequence[ColumnCheck], who: str) -> DataSummary:
    """Check every column in one aggregate; raise one ValueError listing what is wrong."""
    exprs: list[Column] = [F.count(F.lit(1)).alias("rows")]
    for i, c in enumerate(checks):
        col = as_array(df, c.column) if c.is_array else F.col(c.column)
        exprs.append(F.sum(F.col(c.column).isNull().cast("long")).alias(f"nulls{i}"))
        if c.is_array:
            size = F.when(col.isNotNull(), F.size(col))
            exprs += [
                F.min(size).alias(f"minlen{i}"),
                F.max(size).alias(f"maxlen{i}"),
                F.sum(F.when(col.isNotNull(), non_finite_count(col))).alias(f"bad{i}"),
            ]
        else:
            value = col.cast("double")
            exprs += [
                F.sum((F.isnan(value) | (F.abs(value) == float("inf"))).cast("long")).alias(f"bad{i}"),
                F.min(value).alias(f"min{i}"),
                F.max(value).alias(f"max{i}"),
                F.sum((value != F.floor(value)).cast("long")).alias(f"frac{i}"),
            ]
    row = df.agg(*exprs).first()
    assert row is not None
    if row["rows"] == 0:
        raise ValueError(f"{who}: the DataFrame is empty; expected at least one row")
    problems: list[str] = []
    lengths: dict[str, int] = {}
    min_value: dict[str, float] = {}
    max_value: dict[str, float] = {}
    for i, c in enumerate(checks):
        where = f"{c.role} column {c.column!r}"
        if row[f"nulls{i}"]:
            problems.append(f"{where}: expected no nulls, found {row[f'nulls{i}']} null rows")
        if row[f"bad{i}"]:
            what = "elements" if c.is_array else "rows"
            problems.append(f"{where}: expected finite values, found {row[f'bad{i}']} NaN/infinite/null {what}")
        if c.is_array:
            low, high = row[f"minlen{i}"], row[f"maxlen{i}"]
            if low is None:
                continue
            if low != high:
                problems.append(f"{where}: expected arrays of one length, found lengths from {low} to {high}")
            elif high == 0:
                problems.append(f"{where}: expected non-empty arrays, found only empty ones")
            elif c.length is not None and low != c.length:
                problems.append(f"{where}: expected arrays of length {c.length}, found length {low}")
            lengths[c.column] = int(high)
        else:
            low, high = row[f"min{i}"], row[f"max{i}"]
            if low is None or (isinstance(low, float) and math.isnan(low)):
                continue
            min_value[c.column], max_value[c.column] = float(low), float(high)
            if (c.integral or c.num_classes is not None) and row[f"frac{i}"]:
                problems.append(f"{where}: expected integral class labels, found {row[f'frac{i}']} non-integral values")
            if c.num_classes is not None and (low < 0 or high > c.num_classes - 1):
                problems.append(
                    f"{where}: expected class labels in 0..{c.num_classes - 1}, found values from {low:g} to {high:g}"
                )
            elif c.integral and low < 0:
                problems.append(f"{where}: expected class labels >= 0, found {low:g}")
    if problems:
        raise ValueError(f"{who}: invalid input data: " + "; ".join(problems))
    return DataSummary(rows=int(row["rows"]), lengths=lengths, min_value=min_value, max_value=max_value)
