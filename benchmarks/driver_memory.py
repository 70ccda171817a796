"""Driver memory while fitting on and transforming 1M rows (no collect, no per-row objects on the driver).

    .venv/bin/python benchmarks/driver_memory.py [--rows 1000000] [--driver-memory 4g]

Generates rows of 64 floats and 10 classes inside Spark, fits a small MLP
(horovod, 2 ranks, 1 epoch) and runs transform into a no-op sink, sampling
the resident memory of the driver's Python process and of the JVM every
0.2 s. The Python figure is the one that would grow with per-row objects on
the driver; it is compared with its value just before ``fit`` (Spark up,
torch imported). In local mode the JVM is the driver and the executors at
once, so its figure also holds the executors' task memory; the heap still in
use after a full GC at the end of each stage shows what is retained. Prints
a table and writes benchmarks/results/driver_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from machine import git_commit, machine_info  # noqa: E402  (benchmarks/machine.py)


class PeakMemory:
    """Samples the RSS of this process and of its child JVM in a background thread."""

    def __init__(self) -> None:
        self.python = self.jvm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while True:
            self.python = max(self.python, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    if "java" in child.name():
                        self.jvm = max(self.jvm, child.memory_info().rss)
                except psutil.Error:
                    pass
            if self._stop.wait(0.2):
                break

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def jvm_heap_after_gc_mb(spark) -> float:
    """Heap the JVM still holds after a full collection: what the driver (and, locally, executors) retain."""
    runtime = spark._jvm.java.lang.Runtime.getRuntime()
    spark._jvm.java.lang.System.gc()
    return (runtime.totalMemory() - runtime.freeMemory()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--driver-memory", default="4g", help="spark.driver.memory (the JVM heap limit)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "driver_memory.json"))
    args = parser.parse_args()
    import torch  # noqa: F401  (imported before the baseline, as fit imports it)
    from pyspark.sql import functions as F

    from sparkneural.estimators import MLPClassifier
    from sparkneural.session import get_spark

    spark = get_spark("sparkneural-driver-memory", master="local[2]",
                      conf={"spark.ui.enabled": "false", "spark.driver.memory": args.driver_memory})
    spark.sparkContext.setLogLevel("ERROR")
    rows = (
        spark.range(args.rows, numPartitions=8)
        .select(F.array(*[F.rand(i).cast("float") for i in range(64)]).alias("features"),
                (F.col("id") % 10).cast("double").alias("label"))
    )
    machine = machine_info()
    spark.range(1000).count()  # start the JVM's executors before the baseline
    with PeakMemory() as before:
        time.sleep(1.0)
    results = {"baseline": {"python_rss_mb": before.python / 2**20, "jvm_rss_mb": before.jvm / 2**20,
                            "jvm_heap_after_gc_mb": jvm_heap_after_gc_mb(spark)}}
    with PeakMemory() as fit_memory:
        started = time.perf_counter()
        model = MLPClassifier(hiddenLayers=[64], epochs=1, batchSize=1024, numProc=2, verbose=0).fit(rows)
        seconds = time.perf_counter() - started
    results["fit"] = {"seconds": seconds, "python_rss_mb": fit_memory.python / 2**20, "jvm_rss_mb": fit_memory.jvm / 2**20,
                      "jvm_heap_after_gc_mb": jvm_heap_after_gc_mb(spark)}
    with PeakMemory() as transform_memory:
        started = time.perf_counter()
        model.transform(rows).write.format("noop").mode("overwrite").save()
        seconds = time.perf_counter() - started
    results["transform"] = {"seconds": seconds, "python_rss_mb": transform_memory.python / 2**20,
                            "jvm_rss_mb": transform_memory.jvm / 2**20, "jvm_heap_after_gc_mb": jvm_heap_after_gc_mb(spark)}
    for stage in ("fit", "transform"):
        results[stage]["python_rss_growth_mb"] = results[stage]["python_rss_mb"] - results["baseline"]["python_rss_mb"]
    stages = {name: {k: round(v, 1) for k, v in values.items()} for name, values in results.items()}
    report = {
        "benchmark": "driver_memory",
        "settings": {"rows": args.rows, "features": 64, "classes": 10, "model": "MLPClassifier hiddenLayers=[64]",
                     "fit": "horovod, numProc=2, epochs=1, batchSize=1024", "transform": "mapInArrow into a noop sink",
                     "master": "local[2]", "spark.driver.memory": args.driver_memory},
        "note": "python_rss_mb and jvm_rss_mb are peaks sampled every 0.2 s (baseline: just before fit); "
                "in local mode the JVM is the driver and the executors at once",
        "stages": stages,
        **({"commit": commit} if (commit := git_commit()) else {}),
        "machine": {**machine, "python": platform.python_version(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
    }
    print(f"rows {args.rows:,}, spark.driver.memory {args.driver_memory}")
    print(f"{'stage':<22}{'python RSS MB':>15}{'JVM RSS MB':>12}{'JVM heap MB':>13}{'seconds':>9}")
    for name, values in stages.items():
        label = "before fit" if name == "baseline" else f"{name} (peak)"
        seconds = f"{values['seconds']:9.1f}" if "seconds" in values else ""
        print(f"{label:<22}{values['python_rss_mb']:>15.1f}{values['jvm_rss_mb']:>12.1f}{values['jvm_heap_after_gc_mb']:>13.1f}{seconds}")
    print("(JVM heap: in use after a full GC at the end of the stage)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    spark.stop()


if __name__ == "__main__":
    main()
