"""Run a fit's ranks, and start them again from the last checkpoint when one is lost.

A rank is lost when its report connection to the driver closed without an
end (see ``sparkneural.training.reports``), or when Spark removed its executor:
its process, Python worker or executor went away (preemption, a spot
reclaim, an OOM kill, a node failure). Up to ``maxRestarts`` times the driver
then prints one line, waits (at most ``restartTimeout`` seconds) until Spark
offers the ranks' task slots again, and starts the ranks once more; they
resume from the last epoch's checkpoint, so the final model and history are
those of an uninterrupted fit. A restart that makes no progress (its ranks
are lost again in the epoch it resumed in, as a native crash or an
out-of-memory kill from the batch size would be every time) is not followed
by another. An exception raised by the training code (bad data, an I/O
error, a NaN loss, a bug in a factory) is never retried: the fit fails at
once, naming it; only a collective operation that failed (by the
exception's type, see ``reports.is_collective_error``) is taken for the
consequence of another rank's loss. Nor is a failure the driver cannot
account for retried: a rank that never reported, or one still running on a
live executor.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import time
from typing import Any, Callable, Protocol

from sparkneural import spark_internals
from sparkneural.data.filesystems import join
from sparkneural.training.reports import RankReport, ReportBoard, ReportFolder, ReportServer
from sparkneural.training.spec import TrainSpec

SLOT_POLL_S = 0.5


class Backend(Protocol):
    numProc: int

    def run(self, spec: TrainSpec) -> Any: ...


class RanksLost(RuntimeError):
    """Ranks were lost and the fit could not start them again."""


def report_board(spec: TrainSpec, context: Any, num_proc: int) -> ReportBoard:
    """Where the fit's ranks report: a server on the driver of a classic session (``context``), else
    (a Spark Connect client, which executors may not reach) a folder beside the fit's training data."""
    if context is None:
        return ReportFolder(join(spec.data.root, f"reports-{spec.runId}"), spec.verbose)
    host = context.getConf().get("spark.driver.host") or socket.gethostbyname(socket.gethostname())
    return ReportServer.on_driver(host, spec.verbose, num_proc)


def run_with_restarts(backend: Backend, spec: TrainSpec, context: Any, max_restarts: int, timeout_s: float,
                      on_epoch: Callable[[dict[str, float]], None] | None = None) -> tuple[Any, list[dict]]:
    """Rank 0's ``TrainResult`` and one record per restart; ``on_epoch(record)`` as each epoch line reaches the driver.

    ``spec.checkpointDir`` must be set when ``max_restarts`` > 0: it is where
    restarted ranks resume from. ``context`` is the driver's SparkContext,
    None on a Spark Connect client: the ranks' reports then say all there is
    to know, and a rank that ended without a result or an error counts as lost.
    """
    restarts: list[dict[str, Any]] = []
    with report_board(spec, context, backend.numProc) as server:
        server.on_epoch = on_epoch
        attempt = 0
        while True:
            try:
                result = backend.run(_attempt_spec(spec, server, attempt))
                break
            except Exception as err:
                failed_at = time.time()
                ranks = server.ranks_of(attempt, backend.numProc)
                cause = training_error(ranks)
                if cause is not None:
                    raise RuntimeError(f"training failed on {cause.where()}: {_described(cause)}") from err
                if attempt > 0 and not ranks:
                    raise RanksLost(f"training failed: after restart {attempt} of {max_restarts} the ranks did not start again ({err})") from err
                lost = lost_ranks(ranks, backend.numProc, lambda executor: _removal(context, executor))
                if not lost:
                    reported = next((r for r in ranks if r.error), None)
                    if reported is None:
                        if context is None:  # a Connect client: Spark's own error is all there is
                            raise RuntimeError(f"training failed: {_first_line(err)}") from err
                        raise
                    raise RuntimeError(f"training failed on {reported.where()}: {_described(reported)} "
                                       "(no rank reported another cause)") from err
                what = "; ".join(why for _, why in lost)
                if attempt >= max_restarts:
                    limit = "restarts are off (maxRestarts=0)" if max_restarts == 0 else f"after {attempt} restart(s) (maxRestarts={max_restarts})"
                    raise RanksLost(f"training failed: {what}; {limit}") from err
                epoch = server.checkpointed() or (_checkpoint_epoch(spec) if spec.resume else 0)
                if restarts and epoch == restarts[-1]["resumedAfterEpoch"]:
                    raise RanksLost(f"training failed: {what}; lost again in epoch {epoch + 1} with no progress since restart {attempt}, "
                                    f"so not restarting: a failure at the same point every time (a native crash, running out of "
                                    f"memory) would recur") from err
                resumes = f"resume after epoch {epoch}" if epoch else "start again from epoch 1"
                server.say(f"sparkneural: {what}; restart {attempt + 1} of {max_restarts}: waiting for {backend.numProc} task slots, "
                           f"then the ranks {resumes}")
                if context is not None:  # a Connect client cannot count slots: the barrier stage waits for them itself
                    _wait_for_slots(context, backend.numProc, timeout_s, what)
                restarts.append({"restart": attempt + 1, "resumedAfterEpoch": epoch, "failedAt": failed_at,
                                 "lost": [{"rank": r.rank, "executor": r.executor, "host": r.host, "why": why} for r, why in lost]})
                attempt += 1
        for record in restarts:  # when the restarted ranks took their first step, and in which epoch
            record["firstStepAt"], record["firstEpoch"] = server.first_steps.get(record["restart"], (None, None))
        first = server.first_steps.get(0)
    if restarts and first is not None:  # the epochs this fit trained, over all its attempts
        result = dataclasses.replace(result, epochsRun=[int(h["epoch"]) for h in result.history if h["epoch"] >= first[1]])
    return result, restarts


def training_error(ranks: list[RankReport]) -> RankReport | None:
    """The lowest rank whose training code raised (a collective failing after a peer went away does not count)."""
    return next((r for r in ranks if r.error and not r.error["collective"]), None)


def _described(report: RankReport) -> str:
    """The error a rank reported, e.g. "ValueError: bad factory"."""
    return f"{report.error['type']}: {report.error['message']}"


def lost_ranks(ranks: list[RankReport], num_proc: int, removal: Callable[[str | None], str | None]) -> list[tuple[RankReport, str]]:
    """Each lost rank with why it was lost, when the failure is the lost ranks' alone; else empty.

    ``removal(executor)`` is why Spark removed that executor, or None. A
    rank is lost when its connection closed without an end, or when it is
    still connected but Spark removed its executor. The list is empty when
    the failure cannot be accounted for: fewer than ``num_proc`` ranks ever
    reported, or a rank is still running on a live executor (a hung rank
    holds its slot; starting the ranks again would not help).
    """
    if len(ranks) < num_proc:
        return []
    lost = []
    for rank in ranks:
        if rank.ended:
            continue
        reason = removal(rank.executor)
        if reason:
            lost.append((rank, f"{rank.where()} was lost: Spark removed executor {rank.executor}: {reason}{_signal_of(reason)}"))
        elif rank.lost:
            lost.append((rank, f"{rank.where()} was lost: its process (pid {rank.pid}) ended without a result or an error"))
        else:
            return []
    return lost


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _attempt_spec(spec: TrainSpec, server: ReportBoard, attempt: int) -> TrainSpec:
    if attempt == 0:
        return dataclasses.replace(spec, reports=server.address(0))
    # A restart resumes; when the user did not ask to resume, only from this fit's own checkpoints.
    return dataclasses.replace(spec, reports=server.address(attempt), resume=True, resumeRun=None if spec.resume else spec.runId)


def _removal(context: Any, executor: str | None) -> str | None:
    if context is None or executor in (None, "driver"):
        return None
    return spark_internals.executor_removal(context, executor)


def _checkpoint_epoch(spec: TrainSpec) -> int:
    """The epoch of the checkpoint a user's ``resume`` started from (0 if it cannot be read)."""
    from sparkneural.training.loop import load_checkpoint

    try:
        checkpoint = load_checkpoint(spec.checkpointDir)
    except Exception:  # noqa: BLE001 - only the restart line's wording depends on it
        return 0
    return int(checkpoint["epoch"]) if checkpoint else 0


def _signal_of(reason: str) -> str:
    """' (signal 9, SIGKILL)' when ``reason`` ends in a shell exit code above 128."""
    code = reason.rsplit(" ", 1)[-1]
    if not code.isdigit() or not 128 < int(code) < 128 + 65:
        return ""
    number = int(code) - 128
    try:
        return f" (signal {number}, {signal.Signals(number).name})"
    except ValueError:
        return f" (signal {number})"


def _wait_for_slots(context: Any, needed: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        slots = spark_internals.task_slots(context)
        if slots is None or slots >= needed:
            return
        if time.monotonic() >= deadline:
            raise RanksLost(f"training failed: {what}; Spark offered {slots} task slot(s) for {needed} ranks "
                            f"within restartTimeout={timeout_s:g} s, so the ranks could not start again")
        time.sleep(SLOT_POLL_S)
