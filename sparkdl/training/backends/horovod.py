from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterator

from sparkdl.training.backends import warm
from sparkdl.training.backends.result import finish_rank, from_plain, to_plain
from sparkdl.training.spec import TrainSpec

if TYPE_CHECKING:
    from sparkdl.training.loop import TrainResult

START_TIMEOUT_S = 120
COLLECTIVE_TIMEOUT_S = 300
# Horovod's background thread gathers the gradients that are ready once per cycle and
# allreduces them together. Measured on 2 CPU ranks (64-1024x3-10 MLP, batch 256): a step
# took 102-112 ms with Horovod's default cycle and 86-87 ms with 2 ms, fewer and larger
# allreduces; the 64-256-256-10 MLP's 10 ms step did not change. HOROVOD_CYCLE_TIME in the
# environment wins.
CYCLE_TIME_MS = 2
# How long a Horovod Spark task stays after its rank process has exited (Horovod's default: 3 s).
TASK_LINGER_S = 0
# Names the executor's warm process server to the ranks (see ``warm``).
WARM_SERVER_ENV = "SPARKDL_WARM_RANK_SERVER"


def _rank_main(spec: TrainSpec) -> dict[str, Any]:
    """A rank: trains in a child of the executor's warm process server if there is one, else here."""
    name = os.environ.get(WARM_SERVER_ENV)
    if name:
        try:
            return warm.call(name, _train_rank, spec, ready_timeout_s=START_TIMEOUT_S)
        except warm.Unavailable:
            pass
    return _train_rank(spec)


def _train_rank(spec: TrainSpec) -> dict[str, Any]:
    from sparkdl.training.collective import HorovodCollective
    from sparkdl.training.loop import train

    return finish_rank(to_plain(train(spec, HorovodCollective())))


class HorovodBackend:
    """``horovod.spark.run``: one rank per Spark task, Gloo on CPU.

    On executors with CUDA each rank takes one GPU; horovod must then be
    built with NCCL (see README, "GPU clusters").
    """

    name = "horovod"

    def __init__(self, numProc: int = 2, verbose: int = 1):
        self.numProc = numProc
        self.verbose = verbose

    def run(self, spec: TrainSpec) -> "TrainResult":
        import horovod.spark

        env = dict(os.environ)
        # A rank that dies must not leave the others waiting forever in a collective.
        env.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(COLLECTIVE_TIMEOUT_S))
        env.setdefault("HOROVOD_CYCLE_TIME", str(CYCLE_TIME_MS))
        server = None
        if warm.enabled(env):
            server = warm.server_name(env, sys.executable, _application_id())
            env[WARM_SERVER_ENV] = server
        errors = _TailedStream(sys.stderr)
        try:
            with _sparkdl_tasks(server, env):
                results = horovod.spark.run(
                    _rank_main,
                    args=(spec,),
                    num_proc=self.numProc,
                    start_timeout=START_TIMEOUT_S,
                    use_gloo=True,
                    env=env,
                    stderr=errors,
                    verbose=1 if self.verbose >= 2 else 0,
                )
        except Exception as err:
            raise RuntimeError(f"training failed on Horovod rank(s): {errors.last_error() or err}") from err
        return from_plain(next(r for r in results if r["rank"] == 0))


def _application_id() -> str:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    return context.applicationId if context is not None else ""


_tasks_lock = threading.Lock()
_tasks_users = 0
_warm_servers: collections.Counter[tuple[str, str, tuple[tuple[str, str], ...]]] = collections.Counter()


@contextlib.contextmanager
def _sparkdl_tasks(server: str | None, env: dict[str, str]) -> Iterator[None]:
    """While a fit runs, Horovod's Spark tasks start the warm process server and end with their ranks.

    Each task starts the server ``server`` (if not None) on its executor
    before Horovod launches its rank, so the server's imports overlap the
    launch (see ``warm``).

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
    """
    global _tasks_users
    from horovod.spark import runner

    if not (hasattr(runner, "_make_mapper") and hasattr(runner, "MINIMUM_COMMAND_LIFETIME_S")):
        yield  # another Horovod version: keep its behaviour
        return
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


def _sparkdl_mapper(make_mapper):
    def make(*args, **kwargs):
        mapper = make_mapper(*args, **kwargs)
        with _tasks_lock:
            servers = list(_warm_servers)

        def sparkdl_mapper(index, iterator):
            from horovod.spark import runner  # in the Spark task's Python worker

            for name, executable, env in servers:
                warm.start_server(name, executable, {**os.environ, **dict(env)})  # as Horovod merges a rank's
            horovod_value = runner.MINIMUM_COMMAND_LIFETIME_S
            runner.MINIMUM_COMMAND_LIFETIME_S = TASK_LINGER_S
            try:
                yield from mapper(index, iterator)
            finally:
                runner.MINIMUM_COMMAND_LIFETIME_S = horovod_value

        return sparkdl_mapper

    make.__wrapped__ = make_mapper
    return make


class _TailedStream(io.TextIOBase):
    """Passes the ranks' stderr through and keeps its tail, to name the error that ended a run."""

    def __init__(self, target) -> None:
        self.target = target
        self.lines: collections.deque[str] = collections.deque(maxlen=200)

    def write(self, text: str) -> int:
        self.target.write(text)
        self.lines.extend(text.splitlines())
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def last_error(self) -> str | None:
        """The exception a rank raised first, e.g. ``rank 1: ValueError: ...``.

        Errors that Horovod raises on the other ranks once one has failed
        ("Horovod has been shut down", ``HorovodInternalError``) are only
        reported when nothing else is.
        """
        found = []
        for line in self.lines:
            match = re.match(r"\[(\d+)\]<stderr>:(\w+(?:\.\w+)*(?:Error|Exception)\b.*)", line)
            if match:
                found.append(f"rank {match.group(1)}: {match.group(2)}")
        causes = [f for f in found if "Horovod" not in f]
        return (causes or found or [None])[0]
