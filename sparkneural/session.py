"""The SparkSession sparkneural runs on: a classic one, or a Spark Connect client."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Mapping

from pyspark.sql import SparkSession

# Settings a running session accepts (Spark SQL's runtime settings), so a
# Spark Connect server takes them too.
SESSION_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "10000",
    "spark.sql.shuffle.partitions": "8",
}
# Settings fixed when the driver starts: they apply only where it starts here.
DRIVER_CONF: dict[str, str] = {
    "spark.driver.memory": "4g",
    "spark.ui.showConsoleProgress": "false",
}
# Settings every sparkneural session wants; a caller's ``conf`` overrides them.
DEFAULT_CONF: dict[str, str] = {**SESSION_CONF, **DRIVER_CONF}


def get_spark(
    app_name: str = "sparkneural",
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    remote: str | None = None,
) -> SparkSession:
    """Return the active SparkSession, or create one configured for sparkneural.

    An existing session (a notebook's ``spark``, a ``spark-submit`` job's, a
    Spark Connect client's) is returned as it is. A new one is a Spark
    Connect client when ``remote`` or the ``SPARK_REMOTE`` environment
    variable gives a Connect URL: ``sc://host:port`` for a running server, or
    a master such as ``local[2]`` for a server pyspark starts in this process
    (``remote`` wins over ``SPARK_REMOTE``, and either over ``master``).
    Otherwise it runs on ``master`` (``local[*]`` when none is given and
    ``spark-submit`` set none), as a classic session unless ``conf`` sets
    ``spark.api.mode`` to ``connect``. Arrow is enabled either way. A server
    at an ``sc://`` URL keeps the settings it started with: of ``conf``, only
    what a running session accepts is applied, and a warning names the rest.
    Training data goes where ``dataDir`` or ``spark.sparkneural.dataDir`` says,
    else to a directory private to the user (see ``sparkneural.data.materialize``).

    >>> spark = get_spark("demo", master="local[2]")
    >>> spark.range(3).count()
    3
    """
    if remote is not None and master is not None:
        raise ValueError(f"master, remote: give one of them, found master={master!r} and remote={remote!r}")
    active = _active_session()
    if active is not None:
        return active
    remote = remote or os.environ.get("SPARK_REMOTE") or None
    # Executors must run the same interpreter as the driver (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if remote is not None and remote.startswith("sc://"):
        return _connect_to_server(app_name, remote, conf or {})
    builder = SparkSession.builder.appName(app_name)
    if remote is not None:
        builder = builder.remote(remote)
    elif master is not None:
        builder = builder.master(master)
    elif "spark.master" not in _submitted_conf():
        builder = builder.master("local[*]")
    settings = dict(DEFAULT_CONF)
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect client (it has no SparkContext and no JVM)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def set_log_level(spark: SparkSession, level: str) -> None:
    """Set the driver's log level on a classic session; a Connect server keeps its own."""
    if not is_connect(spark):
        spark.sparkContext.setLogLevel(level)


def _active_session() -> SparkSession | None:
    session = SparkSession.getActiveSession()
    if session is not None:
        return session
    # pyspark's classic getActiveSession sees a Connect session only when it was made through
    # pyspark.sql.SparkSession's builder; one made through the Connect builder is found here.
    connect = sys.modules.get("pyspark.sql.connect.session")
    if connect is None:
        return None
    from pyspark.errors import PySparkRuntimeError

    try:
        return connect.SparkSession.active()
    except PySparkRuntimeError:  # NO_ACTIVE_OR_DEFAULT_SESSION
        return None


def _connect_to_server(app_name: str, url: str, conf: Mapping[str, str]) -> SparkSession:
    """A client of the Connect server at ``url``, with the settings of SESSION_CONF and ``conf`` it accepts."""
    from pyspark.errors import AnalysisException

    spark = SparkSession.builder.remote(url).appName(app_name).getOrCreate()
    refused = []
    for key, value in {**SESSION_CONF, **conf}.items():
        try:
            spark.conf.set(key, value)
        except AnalysisException:  # CANNOT_MODIFY_CONFIG: fixed when the server started
            refused.append(key)
    if refused:
        warnings.warn(
            f"Spark Connect server {url}: {', '.join(sorted(refused))} cannot be changed on a running "
            "server; those settings were not applied (the server's own are in effect)",
            stacklevel=2,
        )
    return spark


def _submitted_conf() -> dict[str, str]:
    """Settings given by spark-submit (it passes them to the driver's JVM).

    A ``SparkConf`` made before the JVM gateway is up reads nothing, so the
    gateway is started (or, under spark-submit, joined) first; the session
    built next uses the same gateway.
    """
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())
