from __future__ import annotations

from typing import TYPE_CHECKING

from sparkneural.training.spec import TrainSpec

if TYPE_CHECKING:
    from sparkneural.training.loop import TrainResult


class LocalBackend:
    """One process on the driver: for small data and fast tests."""

    name = "local"

    def __init__(self, numProc: int = 1, verbose: int = 1):
        self.numProc = 1

    def run(self, spec: TrainSpec) -> "TrainResult":
        import dataclasses

        import torch

        from sparkneural.training.collective import LocalCollective
        from sparkneural.training.loop import GLOBAL_RNG_LOCK, train

        # Training runs in the caller's process: use its torch thread count and leave it as it was.
        # Fits running at once here (CrossValidator's parallelism) take turns, so that each
        # draws from torch's global generator only what its own seeds give.
        with GLOBAL_RNG_LOCK:
            threads = torch.get_num_threads()
            try:
                return train(dataclasses.replace(spec, threads=spec.threads or threads), LocalCollective())
            finally:
                torch.set_num_threads(threads)
