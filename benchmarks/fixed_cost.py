"""The fixed cost of ``fit()`` alone: a first fit of the application and later fits, 2 Horovod ranks.

Wall time of ``fit()`` minus the seconds of its epochs, for a 1-epoch fit of
the cheap MLP on 10k rows on local[2], measured the way ``training.py``
measures it (the same phases), without that script's throughput runs. Made
to compare two versions of the code in one session, in turn: run it from
each checkout, alternating, and compare the ratios.

    .venv/bin/python benchmarks/fixed_cost.py [--later 3] [--out PATH]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FrameFiles, Results, arguments, spark_session  # noqa: E402
from training import FIXED_SMALL, _fixed_cost_fit, install_rank_clock  # noqa: E402


def main() -> dict:
    args = arguments(__doc__.splitlines()[0], later=(int, 3, "how many later fits to time"))
    batch = 256
    results = Results("fixed_cost", args.quick, rows=FIXED_SMALL, later_fits=args.later, ranks=2, batchSize=batch, spark="local[2]")
    spark = spark_session("sparkdl-bench-fixed-cost")
    files = FrameFiles()
    clock_dir = install_rank_clock()
    try:
        first = _fixed_cost_fit(spark, files, FIXED_SMALL, batch, clock_dir)
        later = [_fixed_cost_fit(spark, files, FIXED_SMALL, batch, clock_dir) for _ in range(args.later)]
    finally:
        files.close()
        spark.stop()
    fixed = [p["fixed"] for p in later]
    results.add("fit() fixed cost, 10k rows, first fit of the application", first["fixed"], "s", **first)
    results.add(f"fit() fixed cost, 10k rows, later fits (median of {len(fixed)})", statistics.median(fixed), "s",
                runs=fixed, phases=later)
    return results.finish(args.out)


if __name__ == "__main__":
    main()
