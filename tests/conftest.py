import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local[2] SparkSession for the whole test session."""
    from sparkdl.session import get_spark

    cache = tmp_path_factory.mktemp("parquet-cache")
    session = get_spark(
        "sparkdl-tests",
        master="local[2]",
        conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "petastorm.spark.converter.parentCacheDirUrl": f"file://{cache}",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def digits_df(spark):
    from sparkdl.datasets import digits

    return digits(spark).cache()
