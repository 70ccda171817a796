"""Driver memory while fitting on and transforming 1M rows (no collect, no per-row objects on the driver).

    .venv/bin/python benchmarks/driver_memory.py [--rows 1000000]

Generates rows of 64 floats and 10 classes inside Spark, fits a small MLP
(horovod, 2 ranks, 1 epoch) and runs transform into a no-op sink, sampling
the resident memory of the driver's Python process and of the JVM every
0.2 s. Prints a table and writes benchmarks/results/driver_memory.json.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PeakMemory:
    """Samples the RSS of this process and of its child JVM in a background thread."""

    def __init__(self) -> None:
        self.python = self.jvm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.python = max(self.python, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    if "java" in child.name():
                        self.jvm = max(self.jvm, child.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from pyspark.sql import functions as F

    from sparkdl.estimators import MLPClassifier
    from sparkdl.session import get_spark

    spark = get_spark("sparkdl-driver-memory", master="local[2]", conf={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    rows = (
        spark.range(args.rows, numPartitions=8)
        .select(F.array(*[F.rand(i).cast("float") for i in range(64)]).alias("features"),
                (F.col("id") % 10).cast("double").alias("label"))
    )
    results = {}
    with PeakMemory() as fit_memory:
        started = time.perf_counter()
        model = MLPClassifier(hiddenLayers=[64], epochs=1, batchSize=1024, numProc=2, verbose=0).fit(rows)
        results["fit_seconds"] = time.perf_counter() - started
    results["fit_peak_python_rss_mb"] = fit_memory.python / 2**20
    results["fit_peak_jvm_rss_mb"] = fit_memory.jvm / 2**20
    with PeakMemory() as transform_memory:
        started = time.perf_counter()
        model.transform(rows).write.format("noop").mode("overwrite").save()
        results["transform_seconds"] = time.perf_counter() - started
    results["transform_peak_python_rss_mb"] = transform_memory.python / 2**20
    results["transform_peak_jvm_rss_mb"] = transform_memory.jvm / 2**20
    results.update(rows=args.rows, machine={"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                                             "python": platform.python_version()})
    print(f"{'rows':<34}{args.rows:>12,}")
    for key, value in results.items():
        if isinstance(value, float):
            print(f"{key:<34}{value:>12.1f}")
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/driver_memory.json", "w") as f:
        json.dump(results, f, indent=2)
    spark.stop()


if __name__ == "__main__":
    main()
