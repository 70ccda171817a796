"""Everything sparkdl does with Horovod's private API, in one place.

The Horovod backend changes how Horovod's Spark tasks behave (see
``sparkdl_tasks``) through two private names of ``horovod.spark.runner``,
and keeps the end of Horovod's own Spark job out of the driver's output
(see ``quiet_job_cancellation``).
``REQUIRED`` lists them and ``WRITTEN_FOR`` the Horovod version they were
read from. On another version whose names are all there the changes apply
with a warning; if one is missing a fit stops before launching anything,
unless ``SPARKDL_HOROVOD_PATCHES=0`` is set: Horovod then runs unchanged
(its 3 s task linger, no warm ranks).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import os
import re
import sys
import threading
import warnings
from typing import Any, Callable, Iterator, Mapping

from sparkdl.training import devices
from sparkdl.training.backends import warm

WRITTEN_FOR = "0.28.1"
REQUIRED: dict[str, tuple[str, ...]] = {"horovod.spark.runner": ("_make_mapper", "MINIMUM_COMMAND_LIFETIME_S")}
PATCHES_ENV = "SPARKDL_HOROVOD_PATCHES"
# How long a Horovod Spark task stays after its rank process has exited (Horovod's default: 3 s).
TASK_LINGER_S = 0


def enabled(env: Mapping[str, str]) -> bool:
    """False when ``SPARKDL_HOROVOD_PATCHES`` turns the changes off: Horovod then runs unpatched."""
    return env.get(PATCHES_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def installed_version() -> str:
    import horovod

    return getattr(horovod, "__version__", "unknown")


def missing() -> list[str]:
    """The names of ``REQUIRED`` that the installed Horovod lacks, as ``module.name``."""
    found = []
    for module_name, names in REQUIRED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            found.extend(f"{module_name}.{name}" for name in names)
            continue
        found.extend(f"{module_name}.{name}" for name in names if not hasattr(module, name))
    return found


def check() -> list[str]:
    """What differs from the Horovod this module was written for; empty when nothing does."""
    problems = [f"missing {name}" for name in missing()]
    if installed_version() != WRITTEN_FOR:
        problems.append(f"horovod {installed_version()} is installed, sparkdl was written for horovod {WRITTEN_FOR}")
    return problems


_tasks_lock = threading.Lock()
_tasks_users = 0
_warm_servers: collections.Counter[tuple[str, str, tuple[tuple[str, str], ...]]] = collections.Counter()


@contextlib.contextmanager
def sparkdl_tasks(server: str | None, env: Mapping[str, str]) -> Iterator[None]:
    """While a fit runs, Horovod's Spark tasks start the warm process server, hand their GPUs to their ranks and end with their ranks.

    Each task starts the server ``server`` (if not None) on its executor
    before Horovod launches its rank, so the server's imports overlap the
    launch (see ``warm``).

    A rank runs in a process Horovod starts from one of the Spark tasks on
    its host, where ``TaskContext`` does not reach: the task puts the GPU
    addresses Spark assigned it in ``SPARKDL_GPU_ADDRESSES``, which the rank
    it starts inherits (``sparkdl.training.devices``).

    With Gloo every task of ``horovod.spark.run`` sleeps 3 s after its rank
    process exits, "so that the driver's client can connect again to wait for
    the result". That client sends its request right after starting the
    rank and blocks in the task until the rank exits, long before the end
    of any training, so the sleep only delays the end of each fit: it was
    3.0 of the 4.0 s between the ranks' return and ``fit()`` returning on
    local[2]. The tasks' mapper sets the wait to ``TASK_LINGER_S`` in the
    worker and puts Horovod's value back after.

    Horovod's mapper factory is module-global, so concurrent fits share
    one wrapper (reference-counted); each Spark job's mapper starts the
    servers of the fits running when it was made.

    Raises RuntimeError, before anything starts, if Horovod lacks a name of
    ``REQUIRED``; with ``SPARKDL_HOROVOD_PATCHES=0`` in ``env`` it changes
    nothing (the caller must then not ask ranks for a warm server).
    """
    global _tasks_users
    if not enabled(env):
        yield
        return
    _require()
    from horovod.spark import runner

    entry = (server, sys.executable, tuple(sorted(warm.server_env(env).items()))) if server else None
    with _tasks_lock:
        if _tasks_users == 0:
            runner._make_mapper = _sparkdl_mapper(runner._make_mapper)
        _tasks_users += 1
        if entry:
            _warm_servers[entry] += 1
    try:
        yield
    finally:
        with _tasks_lock:
            _tasks_users -= 1
            if entry:
                _warm_servers[entry] -= 1
                if _warm_servers[entry] <= 0:
                    del _warm_servers[entry]
            if _tasks_users == 0:
                runner._make_mapper = getattr(runner._make_mapper, "__wrapped__", runner._make_mapper)


def _require() -> None:
    absent = missing()
    if absent:
        raise RuntimeError(
            f"sparkdl's Horovod backend cannot run with horovod {installed_version()} (it was written for horovod "
            f"{WRITTEN_FOR}): the private names it patches are missing: {', '.join(absent)}. Install horovod=="
            f"{WRITTEN_FOR}, or set the environment variable {PATCHES_ENV}=0 to run Horovod unpatched "
            "(each Spark task then stays 3 s after its rank exits, and every rank imports torch itself: no warm ranks)."
        )
    if installed_version() != WRITTEN_FOR:
        warnings.warn(
            f"horovod {installed_version()} is installed but sparkdl's Horovod patches were written for horovod "
            f"{WRITTEN_FOR}; applying them since the names they need are present ({PATCHES_ENV}=0 turns them off)",
            stacklevel=4,
        )


def _sparkdl_mapper(make_mapper: Callable[..., Any]) -> Callable[..., Any]:
    def make(*args: Any, **kwargs: Any) -> Callable[[int, Iterator[Any]], Iterator[Any]]:
        mapper = make_mapper(*args, **kwargs)
        with _tasks_lock:
            servers = list(_warm_servers)

        def sparkdl_mapper(index: int, iterator: Iterator[Any]) -> Iterator[Any]:
            from horovod.spark import runner  # in the Spark task's Python worker

            for name, executable, env in servers:
                warm.start_server(name, executable, {**os.environ, **dict(env)})  # as Horovod merges a rank's
            horovod_value = runner.MINIMUM_COMMAND_LIFETIME_S
            runner.MINIMUM_COMMAND_LIFETIME_S = TASK_LINGER_S
            # Horovod's task service hands a copy of this environment to the rank it starts.
            gpus = devices.spark_gpu_addresses()
            if gpus:
                os.environ[devices.GPU_ADDRESSES_ENV] = ",".join(gpus)
            try:
                yield from mapper(index, iterator)
            finally:
                runner.MINIMUM_COMMAND_LIFETIME_S = horovod_value
                os.environ.pop(devices.GPU_ADDRESSES_ENV, None)

        return sparkdl_mapper

    make.__wrapped__ = make_mapper  # type: ignore[attr-defined]
    return make


# Horovod cancels its run's job group ("horovod.spark.run.<n>") when the run fails; the thread that
# waits on that job then dies with this, after Horovod has raised the failure itself.
_OWN_CANCELLATION = re.compile(r"cancelled job group horovod\.spark\.run\.\d+")


@contextlib.contextmanager
def quiet_job_cancellation() -> Iterator[None]:
    """While ``horovod.spark.run`` runs, its Spark thread dying of Horovod's own job cancellation prints nothing.

    Without this every failed run (every restart of a lost rank) printed a
    60-line Py4J stack trace of ``SPARK_JOB_CANCELLED`` beside the error or
    the restart line that says what happened. Any other exception in any
    thread goes to the hook that was installed before.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (args.thread is not None and args.thread.name.endswith("(run_spark)") and _OWN_CANCELLATION.search(str(args.exc_value))):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        if threading.excepthook is hook:
            threading.excepthook = previous
