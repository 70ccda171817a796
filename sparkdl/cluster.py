"""What a fit needs to know of the cluster, on a classic session and on a Spark Connect client alike.

Read from the session's ``spark.conf`` (which a Connect client can read),
and on a classic session from its SparkContext where that knows better:

- ``task_slots``: how many tasks can run at once, the default ``numProc``.
  Classic: ``defaultParallelism``. Connect: ``spark.default.parallelism``
  where set; else by the master, ``local[N]`` -> N, ``local-cluster[n,c,m]``
  -> n * c, ``local[*]`` -> the server's CPUs (asked of one task); else
  ``spark.executor.instances * spark.executor.cores``, or ``spark.cores.max``
  where those are unset. Under dynamic allocation, or when none of these is
  set, the number cannot be known and the fit asks for ``numProc``.
- ``task_cpus``: ``spark.task.cpus``.
- ``context``: the session's SparkContext, None on Connect (restarts then
  learn what they can from the ranks' own reports).
"""

from __future__ import annotations

import re
from typing import Any

from sparkdl.session import is_connect

NUM_PROC_HINT = "set numProc to the number of ranks to start"


def context(spark: Any) -> Any:
    """The session's SparkContext, or None for a Spark Connect session (which has none)."""
    if is_connect(spark):
        return None
    return spark.sparkContext


def _conf(spark: Any, key: str) -> str | None:
    value = spark.conf.get(key, None)
    return None if value is None or str(value).strip() == "" else str(value).strip()


def task_cpus(spark: Any) -> int:
    return int(_conf(spark, "spark.task.cpus") or 1)


def task_slots(spark: Any) -> int:
    """How many tasks the session's cluster runs at once (see the module's rule); a ValueError
    asking for ``numProc`` where that cannot be known."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    if (parallelism := _conf(spark, "spark.default.parallelism")) is not None:
        return int(parallelism)
    master = _conf(spark, "spark.master") or ""
    cpus = task_cpus(spark)
    if match := re.fullmatch(r"local\[(\d+)(?:,\s*\d+)?\]", master):
        return int(match.group(1))
    if match := re.fullmatch(r"local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*\d+\s*\]", master):
        return int(match.group(1)) * int(match.group(2)) // cpus
    if re.fullmatch(r"local(\[\*(?:,\s*\d+)?\])?", master):
        return _server_cpus(spark)
    if (_conf(spark, "spark.dynamicAllocation.enabled") or "false").lower() == "true":
        raise ValueError(f"numProc: the number of executors changes under dynamic allocation; {NUM_PROC_HINT}")
    instances, cores = _conf(spark, "spark.executor.instances"), _conf(spark, "spark.executor.cores")
    if instances is not None and cores is not None:
        return int(instances) * int(cores) // cpus
    if (cores_max := _conf(spark, "spark.cores.max")) is not None:
        return int(cores_max) // cpus
    raise ValueError(f"numProc: a Spark Connect client cannot tell how many tasks the cluster runs at once "
                     f"(master {master or 'unknown'}, no spark.executor.instances and spark.executor.cores); {NUM_PROC_HINT}")


def _server_cpus(spark: Any) -> int:
    """The CPUs of a local-mode Connect server's host, as one of its tasks sees them."""
    import os

    import pyarrow as pa

    def count(batches):
        for _ in batches:
            pass
        yield pa.RecordBatch.from_pydict({"cpus": [os.cpu_count() or 1]})

    return int(spark.range(1, numPartitions=1).mapInArrow(count, "cpus LONG").collect()[0]["cpus"])
