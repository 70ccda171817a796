"""What sparkdl reads from Spark's JVM that PySpark does not expose, in one place.

Both reads go through py4j to ``SparkContext`` members that are
``private[spark]`` in Scala (public in the bytecode), present in Spark 3.5
and 4.x: ``maxNumConcurrentTasks`` (the task slots the cluster offers now)
and ``statusStore`` (why an executor was removed, as the UI shows it). Each
returns None when the member is not there, and callers then do without.
"""

from __future__ import annotations

import time
from typing import Any


def task_slots(context: Any) -> int | None:
    """How many tasks of the default resource profile can run at once now."""
    try:
        jsc = context._jsc.sc()
        return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))
    except Exception:  # noqa: BLE001 - a py4j error of any kind: the member is not there
        return None


def executor_removal(context: Any, executor: str, wait_s: float = 3.0) -> str | None:
    """Why Spark removed ``executor`` (e.g. "Command exited with code 137"), once its listener has it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            executors = context._jsc.sc().statusStore().executorList(False)
            for i in range(executors.size()):
                summary = executors.apply(i)
                if summary.id() == executor and not summary.isActive():
                    reason = summary.removeReason()
                    return str(reason.get()) if reason.isDefined() else "removed"
        except Exception:  # noqa: BLE001 - as above
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)
