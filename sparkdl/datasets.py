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
