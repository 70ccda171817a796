"""Small data sets that ship with the library's dependencies (no download)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
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

    bunch = load_digits()
    rows = [
        ([float(v) for v in image], float(label))
        for image, label in zip(bunch.data, bunch.target)
    ]
    schema = T.StructType(
        [
            T.StructField("features", T.ArrayType(T.FloatType(), False), False),
            T.StructField("label", T.DoubleType(), False),
        ]
    )
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, numPartitions), schema)
