"""The fixed cost of ``fit()`` alone: a first fit and later fits, 2 Horovod ranks, against TorchDistributor's bare launch.

Wall time of ``fit()`` minus the seconds of its epochs, for a 1-epoch fit of
the cheap MLP on 10k rows on local[2] (the phases ``training.py`` reports),
against Spark's ``TorchDistributor(num_processes=2, local_mode=False,
use_gpu=False).run(fn)`` with an ``fn`` that does nothing: the least a
launch of 2 training processes by Spark costs. Each way runs in a process
of its own with its own Spark application, all started together and
measured in turn (a first fit each, then ``--later`` rounds), so that
drifting load hits them alike:

- ``sparkneural``: this checkout, classic session;
- ``sparkneural (old)``: another checkout of sparkneural (``--old PATH``, put first on
  ``PYTHONPATH``; left out without it), classic session;
- ``TorchDistributor``: classic session;
- ``sparkneural, Connect`` and ``TorchDistributor, Connect``: one Spark Connect
  client (``remote("local[2]")``, a server of its own; needs ``SPARK_HOME``)
  running both in turn, so the first TorchDistributor launch there follows
  sparkneural's first fit in the same application (``--connect-fits-only``: sparkneural's
  alone; ``--no-connect`` leaves them out).

    .venv/bin/python benchmarks/fixed_cost.py [--later 3] [--old /path/to/checkout] [--no-connect | --connect-fits-only] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Results  # noqa: E402

BATCH = 256
RESULT_MARK = "FIXED-COST-RESULT "  # the line a measuring process answers with; Spark and torch print their own


# -- a measuring process --------------------------------------------------------------
def _session(connect: bool):
    from sparkneural.session import get_spark

    settings = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}
    if connect:
        return get_spark("sparkneural-bench-fixed-cost", remote="local[2]", conf=settings)
    spark = get_spark("sparkneural-bench-fixed-cost", master="local[2]", conf=settings)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _nothing() -> None:
    return None


def _bare_launch() -> dict[str, float]:
    from pyspark.ml.torch.distributor import TorchDistributor

    began = time.perf_counter()
    TorchDistributor(num_processes=2, local_mode=False, use_gpu=False).run(_nothing)
    return {"fixed": time.perf_counter() - began}


def serve(connect: bool, clocked: bool) -> None:
    """Answer each line of stdin ("fit" or "launch") with the seconds of one measurement, until EOF."""
    from training import FIXED_SMALL, _fixed_cost_fit, install_rank_clock

    import tempfile

    from common import FrameFiles

    spark = _session(connect)
    files = FrameFiles()
    clock_dir = install_rank_clock() if clocked else tempfile.mkdtemp(prefix="sparkneural-rank-clock-")
    try:
        for line in sys.stdin:
            what = line.strip()
            try:
                if what == "fit":
                    found = _fixed_cost_fit(spark, files, FIXED_SMALL, BATCH, clock_dir)
                elif what == "launch":
                    found = _bare_launch()
                else:
                    raise ValueError(f"expected 'fit' or 'launch', got {what!r}")
            except Exception as err:  # noqa: BLE001 - the controlling process reports it and goes on
                found = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
            print(RESULT_MARK + json.dumps(found), flush=True)
    finally:
        files.close()
        spark.stop()


# -- the controlling process ----------------------------------------------------------
class Measurer:
    """A measuring process of its own, running one way to launch (its Spark application lives as long as it)."""

    def __init__(self, name: str, what: list[str], connect: bool = False, pythonpath: str | None = None,
                 clocked: bool = True) -> None:
        self.name, self.what = name, what
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
        command = [sys.executable, __file__, "--serve"] + (["--connect"] if connect else []) + ([] if clocked else ["--unclocked"])
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                        cwd=str(Path(__file__).resolve().parents[1]))

    def measure(self, what: str) -> dict:
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(RESULT_MARK):
                return json.loads(line[len(RESULT_MARK):])
        return {"error": f"the measuring process ended (exit code {self.process.wait()})"}

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _label(measurer: Measurer, what: str) -> str:
    return measurer.name if what == "fit" else measurer.name.replace("sparkneural", "TorchDistributor")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--later", type=int, default=3, help="how many later fits (launches) to time each way")
    parser.add_argument("--old", default=None, help="a checkout of another version of sparkneural to compare with")
    parser.add_argument("--no-connect", action="store_true", help="leave out the Spark Connect figures")
    parser.add_argument("--connect-fits-only", action="store_true",
                        help="on Connect, sparkneural's fits alone (no TorchDistributor launches in the same application)")
    parser.add_argument("--quick", action="store_true", help="2 later fits each")
    parser.add_argument("--out", default=None, help="where the JSON goes (default benchmarks/results/fixed_cost.json)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--connect", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unclocked", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.connect, not args.unclocked)
        return {}
    later = 2 if args.quick else args.later
    if not args.no_connect and not os.environ.get("SPARK_HOME"):
        import pyspark

        os.environ["SPARK_HOME"] = os.path.dirname(pyspark.__file__)  # a local Connect server starts from it
    results = Results("fixed_cost", args.quick, rows=10_000, later_fits=later, ranks=2, batchSize=BATCH, epochs=1,
                      spark="local[2]", old=args.old, connect=not args.no_connect,
                      connect_fits_only=args.connect_fits_only)
    measurers = [Measurer("sparkneural", ["fit"])]
    if args.old:
        # The old checkout's rank function differs: its fits are timed whole, without the rank's clock.
        measurers.append(Measurer("sparkneural (old)", ["fit"], pythonpath=args.old, clocked=False))
    measurers.append(Measurer("TorchDistributor", ["launch"]))
    if not args.no_connect:
        measurers.append(Measurer("sparkneural, Connect", ["fit"] if args.connect_fits_only else ["fit", "launch"], connect=True))
    runs: dict[str, list[dict]] = {}
    try:
        for _ in range(1 + later):
            for measurer in measurers:
                for what in measurer.what:
                    found = measurer.measure(what)
                    runs.setdefault(_label(measurer, what), []).append(found)
                    print(f"  {_label(measurer, what)}: {found.get('fixed', found.get('error'))}", flush=True)
    finally:
        for measurer in measurers:
            measurer.close()
    later_medians = {}
    for label, found in runs.items():
        what = "bare launch of 2 processes that do nothing" if label.startswith("TorchDistributor") else "fit() fixed cost"
        errors = [r["error"] for r in found if "error" in r]
        if errors:
            results.add(f"{label}: {what}", None, "s", note=f"failed: {errors[0]}", runs=found)
            continue
        results.add(f"{label}: {what}, first of the application", found[0]["fixed"], "s", **found[0])
        fixed = [r["fixed"] for r in found[1:]]
        later_medians[label] = statistics.median(fixed)
        results.add(f"{label}: {what}, later (median of {len(fixed)})", later_medians[label], "s", runs=fixed,
                    phases=found[1:] if what.startswith("fit") else None)
    for ours, theirs in (("sparkneural", "TorchDistributor"), ("sparkneural (old)", "TorchDistributor"),
                         ("sparkneural, Connect", "TorchDistributor, Connect")):
        if ours in later_medians and theirs in later_medians:
            ratio = later_medians[ours] / later_medians[theirs]
            results.add(f"later fit's fixed cost / {theirs}'s bare launch, {ours}", ratio, "x",
                        target="<= 0.3x" if ours != "sparkneural (old)" else None,
                        met=ratio <= 0.3 if ours != "sparkneural (old)" else None)
    return results.finish(args.out)


if __name__ == "__main__":
    main()
