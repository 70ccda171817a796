"""Small data sets that ship with the library's dependencies (no download)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


def digits(spark: SparkSession, numPartitions: int = 2) -> DataFrame:
    """The 8x8 handwritten digits scikit-learn ships: 1,797 rows.

    Columns: ``features`` (array<float>, the 64 pixel intensities 0..16, row
    major) and ``label`` (double, 0..9).

    >>> df = digits(spark)
    >>> df.count()
    1797
    """
    from sklearn.datasets import load_digits

    if int(numPartitions) < 1:
        raise ValueError(f"numPartitions: expected an integer >= 1, found {numPartitions!r}")
    numPartitions = int(numPartitions)
    bunch = load_digits()
    n = len(bunch.target)
    rows = pd.DataFrame(
        {
            "slice": _parallelize_slices(n, numPartitions),
            "id": np.arange(n, dtype=np.int64),
            "features": list(bunch.data.astype(np.float32)),
            "label": bunch.target.astype(np.float64),
        }
    )
    return _in_slices(spark, spark.createDataFrame(rows, _DIGITS_SCHEMA), numPartitions)


_DIGITS_SCHEMA = T.StructType(
    [
        T.StructField("slice", T.LongType(), False),
        T.StructField("id", T.LongType(), False),
        T.StructField("features", T.ArrayType(T.FloatType(), False), False),
        T.StructField("label", T.DoubleType(), False),
    ]
)


def _parallelize_slices(n: int, numPartitions: int) -> np.ndarray:
    """The partition of each of ``n`` rows where ``SparkContext.parallelize`` puts them: it cuts a list
    into batches of max(1, min(n // numPartitions, 1024)) rows and gives each partition a run of
    consecutive batches, partition i from batch i * batches // numPartitions."""
    batch = max(1, min(n // numPartitions, 1024))
    batches = -(-n // batch)
    first_batch = [i * batches // numPartitions for i in range(numPartitions + 1)]
    return np.searchsorted(first_batch, np.arange(n) // batch, side="right") - 1


def _in_slices(spark: SparkSession, rows: DataFrame, numPartitions: int) -> DataFrame:
    """``rows`` in ``numPartitions`` partitions: partition i holds the rows whose ``slice`` is i, ordered by ``id``.

    A seeded ``randomSplit`` or ``rand`` draws by partition and position, so
    this gives the splits that the same rows parallelized gave, without a
    SparkContext: ``spark.range`` puts row i in partition i, and joining the
    broadcast rows to it keeps that partitioning.
    """
    partitions = spark.range(0, numPartitions, 1, numPartitions).withColumnRenamed("id", "slice")
    joined = partitions.join(F.broadcast(rows), "slice")
    return joined.sortWithinPartitions("id").drop("slice", "id")


def digits_split(
    spark: SparkSession, split: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 7
) -> tuple[DataFrame, DataFrame]:
    """The digits split train/validation/test, as (labelled, test).

    ``labelled`` holds the train and validation rows, flagged by the boolean
    column ``isValidation`` (pass ``validationCol="isValidation"`` to an
    estimator); the pixels are an MLlib vector column ``pixels``, ready for
    ``StandardScaler``. Both frames are cached.

    >>> labelled, test = digits_split(spark, (0.8, 0.1, 0.1), seed=7)
    """
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    data = digits(spark).withColumn("pixels", array_to_vector("features")).drop("features")
    train, validation, test = data.randomSplit(list(split), seed=seed)
    labelled = train.withColumn("isValidation", F.lit(False)).unionByName(
        validation.withColumn("isValidation", F.lit(True))
    )
    return labelled.cache(), test.cache()
