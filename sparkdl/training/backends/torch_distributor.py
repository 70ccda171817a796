from __future__ import annotations

from sparkdl.training.loop import TrainResult
from sparkdl.training.spec import TrainSpec


def _rank_main(spec: TrainSpec) -> TrainResult:
    from sparkdl.training.collective import TorchDistributedCollective
    from sparkdl.training.loop import train

    comm = TorchDistributedCollective()
    try:
        return train(spec, comm)
    finally:
        comm.close()


class TorchDistributorBackend:
    """Spark's own ``TorchDistributor``: DistributedDataParallel over gloo (nccl on GPU)."""

    name = "torch_distributor"

    def __init__(self, numProc: int = 2, verbose: int = 1):
        self.numProc = numProc

    def run(self, spec: TrainSpec) -> TrainResult:
        import torch
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(num_processes=self.numProc, local_mode=False, use_gpu=torch.cuda.is_available())
        return distributor.run(_rank_main, spec)
