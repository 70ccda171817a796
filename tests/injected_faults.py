"""Faults the tests inject into a fit, as ``estimator._test_hooks = (fail_at(3),)``.

Each fault is a hook that every rank calls as ``hook(spec, rank, epoch)`` as
epoch ``epoch`` (1-based) begins; ``rank`` None below means every rank.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import Any, Callable

Hook = Callable[[Any, int, int], None]


def fail_at(epoch: int, rank: int | None = None) -> Hook:
    """Raise a RuntimeError as ``epoch`` begins on ``rank``."""

    def fail(spec: Any, this_rank: int, starting: int) -> None:
        if starting == epoch and rank in (None, this_rank):
            raise RuntimeError(f"injected failure at epoch {starting} on rank {this_rank}")

    return fail


def kill_at(epoch: int, rank: int | None = None, attempts: int = 1) -> Hook:
    """SIGKILL ``rank``'s process as ``epoch`` begins, in the fit's first ``attempts`` attempts.

    A lost process: it leaves no exception and no report.
    """

    def kill(spec: Any, this_rank: int, starting: int) -> None:
        if starting == epoch and rank in (None, this_rank) and (spec.reports is None or spec.reports.attempt < attempts):
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


def reset_connection_at(epoch: int, rank: int | None = None) -> Hook:
    """Raise ConnectionResetError as ``epoch`` begins on ``rank``, as a read from S3 raises it."""

    def reset(spec: Any, this_rank: int, starting: int) -> None:
        if starting == epoch and rank in (None, this_rank):
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    return reset
