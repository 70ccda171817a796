"""The Horovod backend: one rank per task of a barrier stage, Gloo on CPU, NCCL on GPU.

Rank 0's task hosts Horovod's Gloo rendezvous (its HTTP key-value store) on
rank 0's own address; every rank gets the ``HOROVOD_*`` variables Horovod's
own launchers set, calls ``hvd.init()``, and once every rank has passed it
the rendezvous closes. ``hvd.shutdown()`` ends each fit, so the next one
initialises Horovod again in the same (reused) Python worker.

Anyone who can reach rank 0's host may talk to the rendezvous while it is
open (from the start of the stage until every rank has initialised,
typically well under a second): it authenticates no one. Someone who does
could, in that window, read the ranks' addresses or post wrong ones, and so
make the fit fail, or wait until ``HOROVOD_GLOO_TIMEOUT_SECONDS``; it receives no data and
runs no code of the fit.

A rank runs with its executor's environment; from the driver's it gets only
the allow-listed variables of ``environment``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sparkneural.training import reports
from sparkneural.training.backends import barrier, environment
from sparkneural.training.backends.result import from_plain, to_plain
from sparkneural.training.spec import TrainSpec

if TYPE_CHECKING:
    from sparkneural.training.loop import TrainResult

START_TIMEOUT_S = 120  # for rank 0 to open the rendezvous
COLLECTIVE_TIMEOUT_S = 300
# Horovod's background thread gathers the gradients that are ready once per cycle and
# allreduces them together. Measured on 2 CPU ranks (64-1024x3-10 MLP, batch 256): a step
# took 102-112 ms with Horovod's default cycle and 86-87 ms with 2 ms, fewer and larger
# allreduces; the 64-256-256-10 MLP's 10 ms step did not change. HOROVOD_CYCLE_TIME in the
# environment wins.
CYCLE_TIME_MS = 2


class Rendezvous:
    """Horovod's Gloo rendezvous server, listening on ``host`` only, for the ranks on ``topology.hosts``."""

    def __init__(self, topology: barrier.Topology) -> None:
        from horovod.runner.common.util.hosts import SlotInfo
        from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer

        # RendezvousServer.start binds every interface; its HTTP server alone takes an address.
        self.server = RendezvousHTTPServer((topology.host, 0), RendezvousHandler, 0)
        self.server.init([SlotInfo(**_slot(topology, rank)) for rank in range(topology.size)])
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="sparkneural-horovod-rendezvous", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread = None


def _slot(topology: barrier.Topology, rank: int) -> dict[str, Any]:
    """Where ``rank`` sits, in the terms of Horovod's ``SlotInfo``."""
    place = barrier.Topology(rank, topology.hosts)
    cross_rank, cross_size = topology.cross(rank)
    return {"hostname": place.host, "rank": rank, "local_rank": place.local_rank, "cross_rank": cross_rank,
            "size": topology.size, "local_size": place.local_size, "cross_size": cross_size}


def horovod_env(topology: barrier.Topology, rendezvous_port: int) -> dict[str, str]:
    """The variables with which ``hvd.init()`` joins the fit's Gloo rendezvous as ``topology.rank``."""
    slot = _slot(topology, topology.rank)
    return {
        "HOROVOD_HOSTNAME": slot["hostname"],
        **{f"HOROVOD_{key.upper()}": str(slot[key]) for key in ("rank", "size", "local_rank", "local_size", "cross_rank", "cross_size")},
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": topology.hosts[0],
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(rendezvous_port),
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
    }


# What a rank gets where the driver's environment says nothing: a rank that dies must not leave
# the others waiting forever in a collective.
DEFAULTS = {"HOROVOD_GLOO_TIMEOUT_SECONDS": str(COLLECTIVE_TIMEOUT_S), "HOROVOD_CYCLE_TIME": str(CYCLE_TIME_MS)}


def _rank_main(topology: barrier.Topology, spec: TrainSpec, driver_env: dict[str, str]) -> dict[str, Any] | None:
    rendezvous = Rendezvous(topology) if topology.rank == 0 else None
    try:
        port = int(barrier.rank0_value(spec, "rendezvous", topology,
                                       str(rendezvous.port) if rendezvous else None, START_TIMEOUT_S))
        with barrier.environment({**DEFAULTS, **driver_env, **horovod_env(topology, port)}):
            result = reports.reporting(spec.reports, topology.rank, _train, spec, rendezvous)
    finally:
        if rendezvous is not None:
            rendezvous.close()
    return result if topology.rank == 0 else None


def _train(reporter: reports.Reporter, spec: TrainSpec, rendezvous: Rendezvous | None) -> dict[str, Any]:
    import horovod.torch as hvd

    from sparkneural.training.collective import HorovodCollective, collective_call
    from sparkneural.training.loop import train

    with collective_call("horovod init"):
        hvd.init()
    try:
        with collective_call("horovod barrier"):
            hvd.barrier()  # every rank has joined: the rendezvous has served its purpose
        if rendezvous is not None:
            rendezvous.close()
        return to_plain(train(spec, HorovodCollective(), reporter))
    finally:
        hvd.shutdown()


class HorovodBackend:
    """Horovod over the ranks of one barrier stage: Gloo on CPU, NCCL on GPU.

    On executors with CUDA each rank takes one GPU; horovod must then be
    built with NCCL (see docs/running/gpus.md).
    """

    name = "horovod"

    def __init__(self, numProc: int = 2, verbose: int = 1, spark: Any = None, profile: Any = None):
        self.numProc, self.verbose, self.spark, self.profile = numProc, verbose, spark, profile

    def run(self, spec: TrainSpec) -> "TrainResult":
        env = environment.rank_env()
        result = barrier.launch(self.spark, self.numProc, lambda topology: _rank_main(topology, spec, env),
                                self.profile)
        return from_plain(result)
