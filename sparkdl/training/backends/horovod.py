from __future__ import annotations

import os

from sparkdl.training.loop import TrainResult
from sparkdl.training.spec import TrainSpec

START_TIMEOUT_S = 120
COLLECTIVE_TIMEOUT_S = 300


def _rank_main(spec: TrainSpec) -> TrainResult:
    from sparkdl.training.collective import HorovodCollective
    from sparkdl.training.loop import train

    return train(spec, HorovodCollective())


class HorovodBackend:
    """``horovod.spark.run``: one rank per Spark task, Gloo on CPU.

    On executors with CUDA each rank takes one GPU; horovod must then be
    built with NCCL (see README, "GPU clusters").
    """

    name = "horovod"

    def __init__(self, numProc: int = 2, verbose: int = 1):
        self.numProc = numProc
        self.verbose = verbose

    def run(self, spec: TrainSpec) -> TrainResult:
        import horovod.spark

        env = dict(os.environ)
        # A rank that dies must not leave the others waiting forever in a collective.
        env.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(COLLECTIVE_TIMEOUT_S))
        results = horovod.spark.run(
            _rank_main,
            args=(spec,),
            num_proc=self.numProc,
            start_timeout=START_TIMEOUT_S,
            use_gloo=True,
            env=env,
            verbose=1 if self.verbose >= 2 else 0,
        )
        return next(r for r in results if r.rank == 0)
