"""Run a fit's ranks, and start them again from the last checkpoint when one is lost.

A rank is lost when its report connection to the driver closes without an
end (see ``sparkdl.training.reports``): its process, Python worker or
executor went away (preemption, a spot reclaim, an OOM kill, a node
failure). Up to ``maxRestarts`` times the driver then prints one line, waits
(at most ``restartTimeout`` seconds) until Spark offers the ranks' task slots
again, and starts the ranks once more; they resume from the last epoch's
checkpoint, so the final model and history are those of an uninterrupted
fit. An exception raised by the training code (bad data, a NaN loss, a bug
in a factory) is never retried: the fit fails at once, naming it.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import time
from typing import Any

from sparkdl.training.backends import spark_internals
from sparkdl.training.reports import RankReport, ReportServer
from sparkdl.training.spec import TrainSpec

SLOT_POLL_S = 0.5


class RanksLost(RuntimeError):
    """Ranks were lost and the fit could not start them again."""


def run_with_restarts(backend: Any, spec: TrainSpec, context: Any, max_restarts: int, timeout_s: float) -> tuple[Any, list[dict]]:
    """Rank 0's ``TrainResult`` and one record per restart.

    ``spec.checkpointDir`` must be set when ``max_restarts`` > 0: it is where
    restarted ranks resume from. ``context`` is the SparkContext.
    """
    host = context.getConf().get("spark.driver.host") if context is not None else None
    host = host or socket.gethostbyname(socket.gethostname())
    restarts: list[dict[str, Any]] = []
    with ReportServer(host, spec.verbose) as server:
        attempt = 0
        while True:
            try:
                result = backend.run(_attempt_spec(spec, server, attempt))
                break
            except Exception as err:
                ranks = server.attempt(attempt)
                failed_at = time.time()
                cause = next((r for r in ranks if r.error and not r.error["collective"]), None)
                lost = [r for r in ranks if r.lost]
                if cause is not None:
                    raise RuntimeError(f"training failed on {cause.where()}: {cause.error['type']}: {cause.error['message']}") from err
                if not lost:
                    raise
                what = "; ".join(_describe(r, context) for r in lost)
                if attempt >= max_restarts:
                    limit = "restarts are off (maxRestarts=0)" if max_restarts == 0 else f"after {attempt} restart(s) (maxRestarts={max_restarts})"
                    raise RanksLost(f"training failed: {what}; {limit}") from err
                epoch = server.checkpointed() or (spec.resume and _checkpoint_epoch(spec)) or 0
                server.say(f"sparkdl: {what}; restart {attempt + 1} of {max_restarts}: waiting for {backend.numProc} task slots, "
                           f"then the ranks resume from epoch {epoch}")
                _wait_for_slots(context, backend.numProc, timeout_s, what)
                restarts.append({"restart": attempt + 1, "lost": [dataclasses.asdict(r) for r in lost], "cause": what,
                                 "resumedFromEpoch": epoch, "failedAt": failed_at})
                attempt += 1
        for record in restarts:
            record["firstStepAt"] = server.first_steps.get(record["restart"], (None,))[0]
        first = server.first_steps.get(0)
    if restarts and first is not None:  # the epochs this fit trained, over all its attempts
        result = dataclasses.replace(result, epochsRun=[int(h["epoch"]) for h in result.history if h["epoch"] >= first[1]])
    return result, restarts


def _attempt_spec(spec: TrainSpec, server: ReportServer, attempt: int) -> TrainSpec:
    if attempt == 0:
        return dataclasses.replace(spec, reports=server.address(0))
    # A restart resumes; when the user did not ask to resume, only from this fit's own checkpoints.
    return dataclasses.replace(spec, reports=server.address(attempt), resume=True, resumeRun=None if spec.resume else spec.runId)


def _checkpoint_epoch(spec: TrainSpec) -> int:
    from sparkdl.training.loop import load_checkpoint

    checkpoint = load_checkpoint(spec.checkpointDir)
    return int(checkpoint["epoch"]) if checkpoint else 0


def _describe(report: RankReport, context: Any) -> str:
    """e.g. "rank 1 on executor 1 (127.0.0.1) was lost: Spark removed executor 1: Command exited with code 137 (signal 9, SIGKILL)"."""
    text = f"{report.where()} was lost"
    reason = spark_internals.executor_removal(context, report.executor) if report.executor not in (None, "driver") else None
    if reason:
        return f"{text}: Spark removed executor {report.executor}: {reason}{_signal_of(reason)}"
    if report.open:
        return f"{text}: it stopped reporting without ending"
    return f"{text}: its process (pid {report.pid}) ended without a result or an error"


def _signal_of(reason: str) -> str:
    """" (signal 9, SIGKILL)" when ``reason`` ends in a shell exit code above 128."""
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
