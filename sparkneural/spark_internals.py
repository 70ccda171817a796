"""What sparkneural reads from Spark that PySpark does not expose, in one place.

- ``active_context``: the driver's SparkContext, None under Spark Connect;
  ``local_master``: whether it runs in local mode.
- ``task_slots``, ``executor_states`` and ``executor_removal`` go through
  py4j to ``SparkContext`` members that are ``private[spark]`` in Scala
  (public in the bytecode), present in Spark 3.5 and 4.x:
  ``maxNumConcurrentTasks`` (the task slots the cluster offers now) and
  ``statusStore`` (the executors, and why one was removed, as the UI shows
  it). Each returns None when the member is not there (py4j: "does not
  exist") or the context has no JVM (stopped, or a stand-in without one), and
  callers then do without; an error the member itself throws is raised.
- ``executor_identity``: which executor a Python process on an executor
  runs under, from the executor JVM's command line.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, TypeVar

from py4j.protocol import Py4JError, Py4JJavaError

T = TypeVar("T")


def active_context() -> Any:
    """The driver's SparkContext, or None (no session yet, or a Spark Connect client)."""
    from pyspark import SparkContext

    return SparkContext._active_spark_context


def local_master() -> bool:
    """Whether the driver's SparkContext runs in local mode (its executors are this host); False under Spark Connect."""
    context = active_context()
    return context is not None and context.master.startswith("local")


def task_slots(context: Any) -> int | None:
    """How many tasks of the default resource profile can run at once now."""

    def read(jsc: Any) -> int:
        return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))

    return _where_present(context, read)


def executor_states(context: Any) -> dict[str, str | None] | None:
    """Every executor Spark's status store knows, by id: None while it is active, else why it was removed."""

    def read(jsc: Any) -> dict[str, str | None]:
        executors = jsc.statusStore().executorList(False)
        states: dict[str, str | None] = {}
        for i in range(executors.size()):
            summary = executors.apply(i)
            if summary.isActive():
                states[summary.id()] = None
            else:
                reason = summary.removeReason()
                states[summary.id()] = str(reason.get()) if reason.isDefined() else "removed"
        return states

    return _where_present(context, read)


def executor_removal(context: Any, executor: str, wait_s: float = 3.0) -> str | None:
    """Why Spark removed ``executor`` (e.g. "Command exited with code 137"), once its listener has it."""
    deadline = time.monotonic() + wait_s
    while True:
        states = executor_states(context)
        if states is None:
            return None
        if (reason := states.get(executor)) is not None:
            return reason
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _where_present(context: Any, read: Callable[[Any], T]) -> T | None:
    """``read`` of the context's Scala SparkContext, or None where it or a member ``read`` calls is not there."""
    jsc = getattr(context, "_jsc", None)  # None once stopped
    if jsc is None:
        return None
    try:
        return read(jsc.sc())
    except Py4JJavaError:
        raise  # the member is there and failed
    except Py4JError:  # "Method ... does not exist", or the JVM is gone
        return None


def executor_identity() -> tuple[str | None, str | None]:
    """(executor id, its host as Spark names it) of the executor this process runs under, where known.

    In local mode the id is "driver". Kubernetes executors have both in
    their environment; elsewhere they are the ``--executor-id`` and
    ``--hostname`` arguments of the executor JVM (``CoarseGrainedExecutorBackend``
    and its YARN and Kubernetes subclasses) above this process.
    """
    if os.environ.get("SPARK_EXECUTOR_ID"):
        return os.environ["SPARK_EXECUTOR_ID"], os.environ.get("SPARK_EXECUTOR_POD_IP")
    pid = os.getppid()
    for _ in range(16):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None, None
        if "--executor-id" in argv[:-1]:
            host = argv[argv.index("--hostname") + 1] if "--hostname" in argv[:-1] else None
            return argv[argv.index("--executor-id") + 1], host
        if any(arg.endswith("SparkSubmit") for arg in argv):
            return "driver", None
        if parent <= 1:
            return None, None
        pid = parent
    return None, None
