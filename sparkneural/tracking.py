"""MLflow tracking of a fit, from the driver: each epoch's metrics as they arrive, then its best epoch and restarts.

A fit logs into the MLflow run that is active in the thread calling ``fit``:
one opened by ``mlflow.start_run()``, or the run ``mlflow.pyspark.ml.autolog()``
opens around ``fit``. It logs, with ``step`` the epoch (1-based):

- every metric of each epoch's history record under the history's own name
  (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``rmse`` ...,
  and ``seconds``, the epoch's wall time), each step once: as the epoch's
  record reaches the driver (whatever ``verbose`` says), or, for the epochs
  none brought (the local backend), from the returned history when the fit ends;
- when the fit validated: ``best_epoch`` and ``best_<earlyStoppingMetric>``
  (e.g. ``best_val_loss``), the epoch early stopping judged best;
- ``restarts``: how many times lost ranks were started again.

This is the only module that imports mlflow, and only on the driver when the
process has already imported it (no run can be active otherwise). With the
``mlflowLogging`` Param or the ``spark.sparkneural.mlflow.enabled`` conf off,
no active run, or mlflow not imported, nothing is logged. Logging runs in a
thread of its own, so a slow tracking server never holds up the ranks'
reports; a tracking error is warned about once and the fit goes on without
logging.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

from sparkneural.former_names import conf_value

ENABLED_CONF = "spark.sparkneural.mlflow.enabled"
FLUSH_TIMEOUT_S = 30.0  # how long the end of a fit waits for the logging thread to finish
_DONE = object()


def conf_enabled(session: Any) -> bool:
    """The ``spark.sparkneural.mlflow.enabled`` conf of ``session`` (unset: true)."""
    value = conf_value(session.conf, ENABLED_CONF)
    if value is None or str(value).strip() == "":
        return True
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"{ENABLED_CONF}: expected true or false, found {value!r}")
    return text == "true"


class FitTracking:
    """Where a fit's metrics go; this base logs nothing (no run, or logging is off)."""

    def epoch(self, record: dict[str, float]) -> None:
        """An epoch's history record, as it reached the driver (called from the report channel's threads)."""

    def fitted(self, history: list[dict[str, float]], best_epoch: int | None, metric: str, restarts: int) -> None:
        """The fit ended: the epochs not logged yet, its best epoch by ``metric`` and its number of restarts."""

    def close(self) -> None:
        """Wait (at most ``FLUSH_TIMEOUT_S``) for what was queued to be logged."""


class MlflowTracking(FitTracking):
    """Logs into one MLflow run through ``client``, in a thread of its own."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._logged: set[int] = set()
        self._lock = threading.Lock()  # also orders the queue: no batch after _DONE
        self._closed = False
        self._failed = False
        self._warned = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._log, name="sparkneural-mlflow", daemon=True)
        self._thread.start()

    def epoch(self, record: dict[str, float]) -> None:
        self._metrics(record, time.time())

    def fitted(self, history: list[dict[str, float]], best_epoch: int | None, metric: str, restarts: int) -> None:
        now = time.time()
        for record in history:
            self._metrics(record, now)
        summary = {"restarts": float(restarts)}
        best = next((r for r in history if r.get("epoch") == best_epoch), None)
        if best is not None and metric in best:
            summary.update({"best_epoch": float(best_epoch), f"best_{metric}": float(best[metric])})
        self._put(summary, now, step=0)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_DONE)
        self._thread.join(FLUSH_TIMEOUT_S)
        if self._thread.is_alive():
            self._warn(f"the tracking server has not taken every metric after {FLUSH_TIMEOUT_S:.0f} s; "
                       "the rest is logged in the background")

    def _metrics(self, record: dict[str, float], at: float) -> None:
        values = {k: float(v) for k, v in record.items() if k != "epoch" and isinstance(v, (int, float))}
        self._put(values, at, int(record["epoch"]), epoch=True)

    def _put(self, values: dict[str, float], at: float, step: int, epoch: bool = False) -> None:
        from mlflow.entities import Metric

        batch = [Metric(key, value, int(at * 1000), step) for key, value in values.items()]
        with self._lock:  # one hold: an epoch taken here is queued before close() can end the queue
            if self._closed or (epoch and step in self._logged):  # a restarted attempt's line, or the history's copy
                return
            if epoch:
                self._logged.add(step)
            self._queue.put(batch)

    def _log(self) -> None:
        while (batch := self._queue.get()) is not _DONE:
            if self._failed:
                continue
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as err:  # noqa: BLE001 - the tracking server's trouble never fails the fit
                self._failed = True
                self._warn(f"logging to MLflow run {self.run_id} failed, so this fit logs nothing more there: {err}")

    def _warn(self, text: str) -> None:
        if self._warned:  # once per fit
            return
        self._warned = True
        from sparkneural.data.filesystems import redacted  # a tracking URI in the message may hold credentials

        warnings.warn(f"sparkneural: {redacted(text)}", RuntimeWarning, stacklevel=2)


def _active(session: Any, enabled: bool) -> FitTracking:
    """The fit's tracking: MLflow's when ``enabled``, the conf allows it and a run is active in this thread."""
    if not enabled or not conf_enabled(session):
        return FitTracking()
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:  # never imported here, so no run can be active: no import cost
        return FitTracking()
    try:
        run = mlflow.active_run()
        if run is None:
            return FitTracking()
        from mlflow.tracking import MlflowClient

        return MlflowTracking(MlflowClient(mlflow.get_tracking_uri()), run.info.run_id)
    except Exception as err:  # noqa: BLE001 - an MLflow that cannot start never fails the fit
        from sparkneural.data.filesystems import redacted

        warnings.warn(f"sparkneural: cannot log this fit to MLflow: {redacted(str(err))}", RuntimeWarning, stacklevel=3)
        return FitTracking()


@contextmanager
def fit_tracking(session: Any, enabled: bool) -> Iterator[FitTracking]:
    """A fit's MLflow tracking (see the module's notes), closed when the fit ends or fails."""
    tracking = _active(session, enabled)
    try:
        yield tracking
    finally:
        tracking.close()
