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
- ``task_profile``: a stage-level ``ResourceProfile`` asking CPUs and GPUs per
  task (``trainingResources``, ``inferenceResources``), checked by
  ``check_resources``.
"""

from __future__ import annotations

import math
import re
from numbers import Integral, Real
from typing import Any

from sparkneural.session import is_connect

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


RESOURCES = {"cpus": "an integer >= 1", "gpus": "a number > 0, whole or at most 0.5 (Spark's rule for a share of a GPU)"}


def check_resources(name: str, value: dict | None) -> None:
    """A ValueError naming the Param ``name`` unless ``value`` is None or asks for ``cpus`` and/or ``gpus`` per task
    as Spark's ``TaskResourceRequest`` allows them."""
    if value is None:
        return
    if not value or set(value) - set(RESOURCES):
        raise ValueError(f"{name}: expected a dict with the keys 'cpus' and/or 'gpus', found {value!r}")
    cpus, gpus = value.get("cpus", 1), value.get("gpus", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, Integral) or cpus < 1:
        raise ValueError(f"{name}: expected 'cpus' to be {RESOURCES['cpus']}, found {cpus!r}")
    if (isinstance(gpus, bool) or not isinstance(gpus, Real) or not math.isfinite(gpus) or gpus <= 0
            or (gpus > 0.5 and gpus % 1 != 0)):
        raise ValueError(f"{name}: expected 'gpus' to be {RESOURCES['gpus']}, found {gpus!r}")


def task_profile(resources: dict | None, default_cpus: int | None = None) -> Any:
    """A ``pyspark.resource.ResourceProfile`` whose tasks ask for ``resources`` ({"cpus": n, "gpus": x}, checked by
    ``check_resources``), or None for None; ``default_cpus`` where ``resources`` names no cpus (else Spark's
    ``spark.task.cpus`` applies). Built without a session: on a classic session pyspark makes it in the JVM, on a
    Spark Connect client the server registers it when a stage first uses it."""
    if resources is None:
        return None
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    requests = TaskResourceRequests()
    if "cpus" in resources or default_cpus is not None:
        requests.cpus(int(resources.get("cpus", default_cpus)))
    if "gpus" in resources:
        requests.resource("gpu", float(resources["gpus"]))
    return ResourceProfileBuilder().require(requests).build


def check_profile_support(name: str, resources: dict, spark: Any) -> None:
    """A ValueError naming the Param ``name`` where ``spark`` cannot run a stage whose tasks ask for ``resources``:
    pyspark before 4 (mapInArrow takes no profile), local mode (no cluster manager schedules the profile), or
    CPUs or GPUs asked of executors that have fewer (``spark.executor.cores``,
    ``spark.executor.resource.gpu.amount``), which would leave the stage waiting for ever."""
    import pyspark

    if int(pyspark.__version__.split(".")[0]) < 4:
        raise ValueError(f"{name}: needs Spark 4 (pyspark {pyspark.__version__}'s mapInArrow takes no resource profile); "
                         "leave it None")
    master = _conf(spark, "spark.master") or ""
    if re.fullmatch(r"local(\[.*\])?", master):
        raise ValueError(f"{name}: needs a cluster manager with stage-level scheduling (standalone, YARN or Kubernetes), "
                         f"found the local master {master!r}; leave it None")
    cpus, cores = resources.get("cpus"), _conf(spark, "spark.executor.cores")
    if cpus is not None and cores is not None and cpus > int(cores):
        raise ValueError(f"{name}: asks {cpus} CPUs per task, but each executor has {cores} (spark.executor.cores)")
    gpus, offered = resources.get("gpus"), float(_conf(spark, "spark.executor.resource.gpu.amount") or 0)
    if gpus is not None and offered < math.ceil(gpus):
        raise ValueError(f"{name}: asks {gpus:g} GPU(s) per task, but each executor offers {offered:g} "
                         "(spark.executor.resource.gpu.amount with its discovery script)")
