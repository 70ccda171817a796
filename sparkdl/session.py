"""The SparkSession sparkdl runs on."""

from __future__ import annotations

import os
import sys
from typing import Mapping

from pyspark.sql import SparkSession

# Settings every sparkdl session wants; a caller's ``conf`` overrides them.
DEFAULT_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "10000",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "4g",
    "spark.ui.showConsoleProgress": "false",
}


def get_spark(
    app_name: str = "sparkdl",
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Return the active SparkSession, or create one configured for sparkdl.

    An existing session (a notebook's ``spark``, a ``spark-submit`` job's) is
    returned as it is. A new one runs on ``master`` (``local[*]`` when none is
    given and ``spark-submit`` set none), with Arrow enabled. Training data
    goes where ``dataDir`` or ``spark.sparkdl.dataDir`` says, else to a
    directory private to the user (see ``sparkdl.data.materialize``).

    >>> spark = get_spark("demo", master="local[2]")
    >>> spark.range(3).count()
    3
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors must run the same interpreter as the driver (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif "spark.master" not in _submitted_conf():
        builder = builder.master("local[*]")
    settings = dict(DEFAULT_CONF)
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _submitted_conf() -> dict[str, str]:
    """Settings given by spark-submit (it passes them to the driver's JVM).

    A ``SparkConf`` made before the JVM gateway is up reads nothing, so the
    gateway is started (or, under spark-submit, joined) first; the session
    built next uses the same gateway.
    """
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())
