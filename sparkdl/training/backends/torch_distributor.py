"""The TorchDistributor backend: Spark's own ``TorchDistributor`` starts the ranks in barrier tasks.

A rank runs with its executor's environment; from the driver's it gets only
the allow-listed variables of ``environment``, as with Horovod.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sparkdl.training import devices, reports
from sparkdl.training.backends import environment
from sparkdl.training.backends.result import finish_rank, from_plain, to_plain
from sparkdl.training.spec import TrainSpec

if TYPE_CHECKING:
    from sparkdl.training.loop import TrainResult


def _rank_main(spec: TrainSpec, use_gpu: bool, driver_env: dict[str, str]) -> dict[str, Any]:
    # TorchDistributor starts a rank with its task's environment only. Set before torch loads
    # here (nothing imported it yet), so that OMP_* and MKL_* take effect as in a Horovod rank.
    os.environ.update(driver_env)
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if use_gpu and visible:
        # TorchDistributor shows a task's processes the GPUs Spark assigned it, by address; one each, by local rank.
        os.environ[devices.GPU_ADDRESSES_ENV] = visible[int(os.environ.get("LOCAL_RANK", 0)) % len(visible)]
    return reports.reporting(spec.reports, int(os.environ["RANK"]), _train, spec)


def _train(reporter: reports.Reporter, spec: TrainSpec) -> dict[str, Any]:
    from sparkdl.training.collective import TorchDistributedCollective
    from sparkdl.training.loop import train

    comm = TorchDistributedCollective(spec.device)
    try:
        return finish_rank(to_plain(train(spec, comm, reporter)))
    finally:
        comm.close()


def whole_gpus_per_task(context: Any) -> bool:
    """Whether Spark gives each task at least one whole GPU: what TorchDistributor's ``use_gpu`` needs."""
    amount = context.getConf().get("spark.task.resource.gpu.amount") if context is not None else None
    return amount is not None and float(amount) >= 1


class TorchDistributorBackend:
    """Spark's own ``TorchDistributor``: DistributedDataParallel over gloo (nccl on GPU).

    Where Spark schedules GPUs (``spark.task.resource.gpu.amount``) and
    ``device`` is not cpu, TorchDistributor runs with ``use_gpu``: each rank
    sees the GPUs Spark assigned its task.
    """

    name = "torch_distributor"

    def __init__(self, numProc: int = 2, verbose: int = 1):
        self.numProc = numProc

    def run(self, spec: TrainSpec) -> "TrainResult":
        from pyspark.ml.torch.distributor import TorchDistributor

        from sparkdl import spark_internals

        use_gpu = spec.device != "cpu" and whole_gpus_per_task(spark_internals.active_context())
        distributor = TorchDistributor(num_processes=self.numProc, local_mode=False, use_gpu=use_gpu)
        return from_plain(distributor.run(_rank_main, spec, use_gpu, environment.rank_env()))
