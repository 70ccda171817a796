"""Data-parallel scaling: steady-state samples/s of 2 ranks over 1 rank, Horovod and TorchDistributor.

The big MLP 64-1024-1024-1024-10 (compute-bound), batch 256 per rank, on
local[2]. Every rank runs one torch thread, so 2 ranks have twice the cores
of 1: the speed-up says how much of the second core data parallelism turns
into samples/s (gradient allreduce and synchronisation are the loss). For
reference the 1-rank run is repeated with 2 torch threads (the same 2 cores
used by intra-op parallelism instead). Samples/s are of the best epoch after
the first. (The 2-thread reference is left out with ``--quick``.)

    .venv/bin/python benchmarks/scaling.py [--quick]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIG, CORES, FrameFiles, Results, arguments, at_least, classification_data, spark_session  # noqa: E402
from training import estimator_for, steady  # noqa: E402

SPEEDUP_TARGET = 1.6


def with_threads(estimator, threads: int):
    """``estimator`` whose ranks each run ``threads`` torch threads."""
    cls = type(estimator)

    class Threaded(cls):  # type: ignore[misc, valid-type]
        def _spec(self, *args, **kwargs):
            return dataclasses.replace(super()._spec(*args, **kwargs), threads=threads)

    copy = estimator.copy()
    copy.__class__ = Threaded
    return copy


def samples_per_s(spark_df, rows: int, epochs: int, ranks: int, backend: str, threads: int) -> tuple[float, list[float]]:
    estimator = with_threads(estimator_for(BIG, epochs, 256, ranks=ranks, backend=backend), threads)
    seconds = [h["seconds"] for h in estimator.fit(spark_df).history]
    return rows / steady(seconds), seconds


def main() -> dict:
    args = arguments(__doc__.splitlines()[0], scale=(float, 1.0, "multiply every size (to try the script out)"))
    rows = max(2000, int((8_000 if args.quick else 40_000) * args.scale))
    epochs = 2 if args.quick else 3  # steady state: the best epoch after the first
    results = Results("scaling", args.quick, rows=rows, epochs=epochs, batchSize=256, network=BIG["label"],
                      spark=f"local[{CORES}]", threads_per_rank=1)
    spark = spark_session("sparkdl-bench-scaling")
    files = FrameFiles()
    try:
        x, y = classification_data(rows, 64, seed=5)
        df = files.frame(spark, x, y)
        for backend in ("horovod", "torch_distributor"):
            one, one_epochs = samples_per_s(df, rows, epochs, 1, backend, threads=1)
            two, two_epochs = samples_per_s(df, rows, epochs, 2, backend, threads=1)
            detail = {"one_rank_samples_per_s": one, "two_ranks_samples_per_s": two,
                      "one_rank_epoch_seconds": one_epochs, "two_ranks_epoch_seconds": two_epochs}
            if backend == "horovod" and not args.quick:
                wide, wide_epochs = samples_per_s(df, rows, epochs, 1, backend, threads=2)
                detail.update(one_rank_two_threads_samples_per_s=wide, one_rank_two_threads_epoch_seconds=wide_epochs,
                              two_ranks_over_one_rank_two_threads=two / wide)
            results.add(f"scaling {BIG['label']}, {backend}: 2 ranks / 1 rank", two / one, "x",
                        target=f">= {SPEEDUP_TARGET}x", met=at_least(two / one, SPEEDUP_TARGET), **detail)
    finally:
        files.close()
        spark.stop()
    return results.finish(args.out)


if __name__ == "__main__":
    main()
