"""The environment a rank takes from the driver: an allow-list, never the driver's whole environment.

A rank (a task of the fit's barrier stage) runs with the environment of its own
executor: its ``PATH``, ``LD_LIBRARY_PATH``, ``JAVA_HOME``,
``HADOOP_CONF_DIR``, ``PYTHONPATH`` and its own credentials (an instance
role, ``spark.executorEnv.*``). From the driver's environment it gets, laid
over its own, only:

- ``HOROVOD_*``, ``NCCL_*``, ``GLOO_*``: settings of the collective
  libraries (cycle time, timeouts, interfaces, debug output);
- ``OMP_*``, ``KMP_*``, ``MKL_*``: CPU threading of torch's native libraries;
- ``SPARKNEURAL_*`` (and, for one release, ``SPARKDL_*``): sparkneural's own settings (not those that describe the
  driver's own process, such as its GPU addresses);
- the variables named in the Spark conf ``spark.sparkneural.rankEnv``: names
  separated by commas, a trailing ``*`` makes a name a prefix, e.g.
  ``spark.sparkneural.rankEnv=TORCH_DISTRIBUTED_DEBUG,MYAPP_*``.

Left out on purpose: keys and tokens (``AWS_SECRET_ACCESS_KEY``,
``*_TOKEN``, ...), which would travel to every executor; paths and settings
of the driver's host, which are wrong on executors that differ from it;
``TORCH_*`` and ``PYTORCH_*``, because beside debug switches they hold
paths (``TORCH_HOME``, ``TORCH_EXTENSIONS_DIR``) and GPU settings of the
driver's host (``PYTORCH_CUDA_ALLOC_CONF``): name the ones a fit needs.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Mapping

from sparkneural import devices
from sparkneural.former_names import ENV_PREFIX, FORMER_ENV_PREFIX, conf_value

RANK_ENV_CONF = "spark.sparkneural.rankEnv"
FORWARDED_PREFIXES = ("HOROVOD_", "NCCL_", "GLOO_", "OMP_", "KMP_", "MKL_", ENV_PREFIX, FORMER_ENV_PREFIX)
# sparkneural's variables that describe the process they are set in: a rank's own values (its task's
# GPUs, its executor) must win over the driver's.
PROCESS_OWN = frozenset({devices.GPU_ADDRESSES_ENV})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")


def parse_names(value: str | None) -> tuple[str, ...]:
    """The variable names in a ``spark.sparkneural.rankEnv`` value; a ValueError names the conf and the bad entry."""
    names = tuple(n.strip() for n in (value or "").split(",") if n.strip())
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"{RANK_ENV_CONF}: expected environment variable names separated by commas, a trailing * for a "
                f"prefix (e.g. 'MY_SETTING,MYAPP_*'), found {name!r}"
            )
    return names


def forwarded(driver_env: Mapping[str, str], names: Iterable[str] = ()) -> dict[str, str]:
    """What of ``driver_env`` a rank gets: the allow-listed prefixes and ``names`` (``X*``: a prefix)."""
    names = tuple(names)
    exact = {n for n in names if not n.endswith("*")}
    prefixes = FORWARDED_PREFIXES + tuple(n[:-1] for n in names if n.endswith("*"))
    return {k: v for k, v in driver_env.items() if (k in exact or k.startswith(prefixes)) and k not in PROCESS_OWN}


def configured_names() -> tuple[str, ...]:
    """The names in ``spark.sparkneural.rankEnv`` of the active SparkSession; none without a session."""
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    try:
        session = SparkSession.active()
    except PySparkRuntimeError:
        return ()
    return parse_names(conf_value(session.conf, RANK_ENV_CONF))


def rank_env() -> dict[str, str]:
    """The variables of this driver that every rank of a fit gets."""
    return forwarded(os.environ, configured_names())
