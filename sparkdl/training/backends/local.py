from __future__ import annotations

from typing import TYPE_CHECKING

from sparkdl.training.spec import TrainSpec

if TYPE_CHECKING:
    from sparkdl.training.loop import TrainResult


class LocalBackend:
    """One process on the driver: for small data and fast tests."""

    name = "local"

    def __init__(self, numProc: int = 1, verbose: int = 1):
        self.numProc = 1

    def run(self, spec: TrainSpec) -> "TrainResult":
        from sparkdl.training.collective import LocalCollective
        from sparkdl.training.loop import train

        return train(spec, LocalCollective())
