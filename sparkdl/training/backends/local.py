from __future__ import annotations

from sparkdl.training.collective import LocalCollective
from sparkdl.training.loop import TrainResult, train
from sparkdl.training.spec import TrainSpec


class LocalBackend:
    """One process on the driver: for small data and fast tests."""

    name = "local"

    def __init__(self, numProc: int = 1, verbose: int = 1):
        self.numProc = 1

    def run(self, spec: TrainSpec) -> TrainResult:
        return train(spec, LocalCollective())
