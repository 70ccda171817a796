"""The Horovod backend: ``horovod.spark.run``, one rank per Spark task.

A rank runs with its executor's environment; from the driver's it gets only
the allow-listed variables of ``environment`` (``HOROVOD_*``, ``NCCL_*``,
``OMP_*``, ``SPARKDL_*``, ..., and what the Spark conf
``spark.sparkdl.rankEnv`` names).
"""

from __future__ import annotations

import collections
import io
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from sparkdl import spark_internals
from sparkdl.training import reports
from sparkdl.training.backends import environment, horovod_internals, warm
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
# Names the executor's warm process server to the ranks (see ``warm``).
WARM_SERVER_ENV = "SPARKDL_WARM_RANK_SERVER"


def _rank_main(spec: TrainSpec) -> dict[str, Any]:
    """A rank: trains in a child of the executor's warm process server if there is one, else here."""
    reports.remember_executor()  # the warm server's child is not under the executor's process tree
    name = os.environ.get(WARM_SERVER_ENV)
    if name:
        try:
            return warm.call(name, _train_rank, spec, ready_timeout_s=START_TIMEOUT_S)
        except warm.Unavailable:
            pass
    return _train_rank(spec)


def _train_rank(spec: TrainSpec) -> dict[str, Any]:
    return reports.reporting(spec.reports, int(os.environ["HOROVOD_RANK"]), _train, spec)


def _train(reporter: reports.Reporter, spec: TrainSpec) -> dict[str, Any]:
    from sparkdl.training.collective import HorovodCollective
    from sparkdl.training.loop import train

    return finish_rank(to_plain(train(spec, HorovodCollective(), reporter)))


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

        # Horovod lays this over the environment of each rank's Spark task (its executor's).
        env = environment.rank_env()
        env.pop(WARM_SERVER_ENV, None)  # set below for this fit only
        if spark_internals.local_master() and "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]  # local mode: the driver's GPUs are the executors'
        # A rank that dies must not leave the others waiting forever in a collective.
        env.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(COLLECTIVE_TIMEOUT_S))
        env.setdefault("HOROVOD_CYCLE_TIME", str(CYCLE_TIME_MS))
        server = None
        # Only the patched tasks start the warm server: unpatched, a rank would wait for one in vain.
        if warm.enabled(env) and horovod_internals.enabled(env):
            server = warm.server_name(env, sys.executable, _application_id())
            env[WARM_SERVER_ENV] = server
        errors = _TailedStream(sys.stderr)
        with horovod_internals.sparkdl_tasks(server, env), horovod_internals.quiet_job_cancellation():
            try:
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
    context = spark_internals.active_context()
    return context.applicationId if context is not None else ""


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
