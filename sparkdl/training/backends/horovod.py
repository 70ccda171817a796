from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterator

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


def _rank_main(spec: TrainSpec) -> dict[str, Any]:
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
        errors = _TailedStream(sys.stderr)
        try:
            with _tasks_end_with_their_ranks():
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


_linger_lock = threading.Lock()
_linger_users = 0


@contextlib.contextmanager
def _tasks_end_with_their_ranks() -> Iterator[None]:
    """Let Horovod's Spark tasks end as soon as their rank process has exited.

    With Gloo every task of ``horovod.spark.run`` sleeps 3 s after its rank
    process exits, "so that the driver's client can connect again to wait for
    the result". That client sends its request right after starting the
    rank and blocks in the task until the rank exits, long before the end
    of any training, so the sleep only delays the end of each fit: it was
    3.0 of the 4.0 s between the ranks' return and ``fit()`` returning on
    local[2]. While a fit runs, the tasks' mapper sets the wait to
    ``TASK_LINGER_S`` in the worker and puts Horovod's value back after.
    """
    global _linger_users
    from horovod.spark import runner

    if not (hasattr(runner, "_make_mapper") and hasattr(runner, "MINIMUM_COMMAND_LIFETIME_S")):
        yield  # another Horovod version: keep its behaviour
        return
    with _linger_lock:
        if _linger_users == 0:
            runner._make_mapper = _short_lingering(runner._make_mapper)
        _linger_users += 1
    try:
        yield
    finally:
        with _linger_lock:
            _linger_users -= 1
            if _linger_users == 0:
                runner._make_mapper = getattr(runner._make_mapper, "__wrapped__", runner._make_mapper)


def _short_lingering(make_mapper):
    def make(*args, **kwargs):
        mapper = make_mapper(*args, **kwargs)

        def mapper_ending_with_rank(index, iterator):
            from horovod.spark import runner  # in the Spark task's Python worker

            horovod_value = runner.MINIMUM_COMMAND_LIFETIME_S
            runner.MINIMUM_COMMAND_LIFETIME_S = TASK_LINGER_S
            try:
                yield from mapper(index, iterator)
            finally:
                runner.MINIMUM_COMMAND_LIFETIME_S = horovod_value

        return mapper_ending_with_rank

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
