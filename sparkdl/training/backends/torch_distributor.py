from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sparkdl.training import reports
from sparkdl.training.backends.result import finish_rank, from_plain, to_plain
from sparkdl.training.spec import TrainSpec

if TYPE_CHECKING:
    from sparkdl.training.loop import TrainResult


def _rank_main(spec: TrainSpec) -> dict[str, Any]:
    return reports.reporting(spec.reports, int(os.environ["RANK"]), _train, spec)


def _train(reporter: reports.Reporter, spec: TrainSpec) -> dict[str, Any]:
    from sparkdl.training.collective import TorchDistributedCollective
    from sparkdl.training.loop import train

    comm = TorchDistributedCollective()
    try:
        return finish_rank(to_plain(train(spec, comm, reporter)))
    finally:
        comm.close()


class TorchDistributorBackend:
    """Spark's own ``TorchDistributor``: DistributedDataParallel over gloo (nccl on GPU)."""

    name = "torch_distributor"

    def __init__(self, numProc: int = 2, verbose: int = 1):
        self.numProc = numProc

    def run(self, spec: TrainSpec) -> "TrainResult":
        import torch
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(num_processes=self.numProc, local_mode=False, use_gpu=torch.cuda.is_available())
        return from_plain(distributor.run(_rank_main, spec))
