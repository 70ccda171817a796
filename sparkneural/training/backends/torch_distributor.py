"""The ``torch_distributor`` backend: DistributedDataParallel over the ranks of one barrier stage.

torch.distributed runs Gloo on CPU and NCCL on GPU. Rank 0's task opens a
``TCPStore`` on rank 0's own address; the others learn its port through the
barrier's ``allGather`` and join. Each rank sees the GPU Spark assigned its
task, else picks one by local rank (as a Horovod rank does).

The store authenticates no one, and it stays open while the process group
lives (torch.distributed keeps using it): anyone who can reach rank 0's host
and that port during the fit can read and write its keys, and so make the
fit fail or wait until ``COLLECTIVE_TIMEOUT_S``; the training data and
weights never pass through it. The name recalls Spark's ``TorchDistributor``,
which this backend ran on before and whose semantics it keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkneural.training import reports
from sparkneural.training.backends import barrier, environment
from sparkneural.training.backends.result import from_plain, to_plain
from sparkneural.training.spec import TrainSpec

if TYPE_CHECKING:
    from sparkneural.training.loop import TrainResult

COLLECTIVE_TIMEOUT_S = 300


def ddp_env(topology: barrier.Topology, store_port: int) -> dict[str, str]:
    """The variables torch.distributed's launchers give rank ``topology.rank``."""
    return {
        "RANK": str(topology.rank),
        "WORLD_SIZE": str(topology.size),
        "LOCAL_RANK": str(topology.local_rank),
        "LOCAL_WORLD_SIZE": str(topology.local_size),
        "MASTER_ADDR": topology.hosts[0],
        "MASTER_PORT": str(store_port),
    }


def _store(topology: barrier.Topology, port: int = 0) -> Any:
    """Rank 0's store (listening on rank 0's address, ``port`` 0: any free one), or another rank's client of it."""
    import datetime

    from torch.distributed import TCPStore

    timeout = datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    if topology.rank == 0:
        return TCPStore(topology.host, port, topology.size, True, timeout=timeout, wait_for_workers=False)
    return TCPStore(topology.hosts[0], port, topology.size, False, timeout=timeout)


def _rank_main(topology: barrier.Topology, spec: TrainSpec, driver_env: dict[str, str]) -> dict[str, Any] | None:
    from sparkneural.training.collective import collective_call

    with collective_call("torch.distributed TCPStore"):
        store = _store(topology) if topology.rank == 0 else None
    port = int(barrier.rank0_value(spec, "store", topology,
                                   str(store.port) if store is not None else None, COLLECTIVE_TIMEOUT_S))
    if store is None:
        with collective_call("torch.distributed TCPStore"):
            store = _store(topology, port)
    with barrier.environment({**driver_env, **ddp_env(topology, port)}):
        result = reports.reporting(spec.reports, topology.rank, _train, spec, store)
    return result if topology.rank == 0 else None


def _train(reporter: reports.Reporter, spec: TrainSpec, store: Any) -> dict[str, Any]:
    from sparkneural.training.collective import TorchDistributedCollective
    from sparkneural.training.loop import train

    comm = TorchDistributedCollective(spec.device, store=store, timeout_s=COLLECTIVE_TIMEOUT_S)
    try:
        return to_plain(train(spec, comm, reporter))
    finally:
        comm.close()


class TorchDistributorBackend:
    """DistributedDataParallel over gloo (nccl on GPU), one rank per task of a barrier stage."""

    name = "torch_distributor"

    def __init__(self, numProc: int = 2, verbose: int = 1, spark: Any = None, profile: Any = None):
        self.numProc, self.verbose, self.spark, self.profile = numProc, verbose, spark, profile

    def run(self, spec: TrainSpec) -> "TrainResult":
        env = environment.rank_env()
        result = barrier.launch(self.spark, self.numProc, lambda topology: _rank_main(topology, spec, env),
                                self.profile)
        return from_plain(result)
