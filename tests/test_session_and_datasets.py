import numpy as np
from pyspark.sql import types as T
from sklearn.datasets import load_digits

from sparkneural.session import get_spark


def test_get_spark_returns_the_active_session_configured_for_arrow(spark):
    assert get_spark() is spark
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert spark.sparkContext.master == "local[2]"


def test_digits_matches_scikit_learn(digits_df):
    assert digits_df.schema["features"].dataType == T.ArrayType(T.FloatType(), False)
    assert digits_df.schema["label"].dataType == T.DoubleType()
    rows = digits_df.collect()
    reference = load_digits()
    assert len(rows) == len(reference.target) == 1797
    # Compare as multisets of (label, pixels), independent of row order.
    ours = sorted((r.label, tuple(r.features)) for r in rows)
    theirs = sorted((float(t), tuple(map(float, x))) for x, t in zip(reference.data, reference.target))
    assert ours == theirs
    assert {r.label for r in rows} == set(np.arange(10.0))
