"""Training data larger than memory: rank memory against data size, streaming against in-memory speed,
the executors' pyarrow write against Spark's Parquet writer, and scoring memory against data size.

    .venv/bin/python benchmarks/streaming.py [--quick] [--rows 1000000] [--large-rows 8000000]

Rows of 64 float features and 10 classes are generated inside Spark (no
driver-side data). Memory figures are peaks of the resident set size,
sampled every 0.1 s, of the largest Spark Python worker: during a fit (each
Horovod rank trains in the Python worker that runs its task, the largest
one: it holds torch, the network and its shuffle buffer), and during
``transform``. Spark reuses its Python workers, so a worker's peak in one
figure can hold what it kept of an earlier one: the streamed fits run from
the smaller data to the larger. Speed figures alternate the two paths in one run.
Prints a table and writes benchmarks/results/streaming.json.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

import psutil

from common import BIG, CHEAP, Results, alternate, arguments, at_least, at_most, send_by_value, spark_session

send_by_value(__name__)


WORKERS = "pyspark.daemon"  # Spark's Python workers (forked from the daemon: its command line), the ranks among them


class PeakRss:
    """The peak RSS of each process of this environment's interpreter whose command line holds ``match``, sampled in a thread.

    Processes are found by command line rather than as children of this one:
    Spark's Python workers are children of its JVM's daemon.
    """

    def __init__(self, match: str, interval: float = 0.1) -> None:
        self._match = match
        self.peaks: dict[int, int] = {}
        self.commands: dict[int, str] = {}
        self._interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for process in psutil.process_iter(["cmdline"]):
                try:
                    command = process.info["cmdline"] or [""]
                    if process.pid != me and command[0].startswith(sys.prefix) and self._match in " ".join(command):
                        self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), process.memory_info().rss)
                        self.commands.setdefault(process.pid, " ".join(process.cmdline())[:160])
                except psutil.Error:
                    pass
            self._stop.wait(self._interval)

    @property
    def largest_mb(self) -> float:
        return max(self.peaks.values(), default=0) / 2**20

    @property
    def largest_command(self) -> str:
        return self.commands.get(max(self.peaks, key=self.peaks.get), "") if self.peaks else ""

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def generated(spark, rows: int, partitions: int = 8):
    from pyspark.sql import functions as F

    return spark.range(rows, numPartitions=partitions).select(
        F.array(*[F.rand(i).cast("float") for i in range(64)]).alias("features"),
        (F.col("id") % 10).cast("double").alias("label"),
    )


def fit(frame, spec: dict, epochs: int = 1, **params):
    from sparkneural.estimators import MLPClassifier

    started = time.perf_counter()
    model = MLPClassifier(hiddenLayers=spec["architectureParams"]["hiddenLayers"], epochs=epochs, batchSize=256,
                          numProc=2, backend="horovod", verbose=0, **params).fit(frame)
    return model, time.perf_counter() - started


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rows=(int, 1_000_000, "rows of the base figures"),
                     large_rows=(int, 8_000_000, "rows of the large-data figures"))
    rows, large = (100_000, 800_000) if args.quick else (args.rows, args.large_rows)
    # The default buffer (64 MiB, ~250k rows of 64 floats) already streams the full sizes;
    # the quick sizes would fit in it, so they get a buffer scaled down alike.
    buffer = {"shuffleBufferRows": rows // 20} if args.quick else {}
    results = Results("streaming", args.quick, rows=rows, large_rows=large, features=64, ranks=2, epochs=1,
                      shuffleBufferRows=buffer.get("shuffleBufferRows", "default (64 MiB of rows)"))
    spark = spark_session("sparkneural-bench-streaming", conf={"spark.driver.memory": "4g"})
    small = {"hiddenLayers": [64]}
    memory = {}
    for n in (rows, large):
        with PeakRss(WORKERS) as peak:
            model, seconds = fit(generated(spark, n), {"architectureParams": small}, **buffer)
        memory[n] = peak.largest_mb
        results.add(f"rank peak RSS, {n:,} rows x 64 floats, streamed", memory[n], "MB", seconds=seconds,
                    epoch_samples_per_s=n / model.history[0]["seconds"], process=peak.largest_command)
    with PeakRss(WORKERS) as peak:
        fit(generated(spark, rows), {"architectureParams": small}, shuffleBufferRows=10**9)
    results.add(f"rank peak RSS, {rows:,} rows, in memory (the whole shard read first)", peak.largest_mb, "MB",
                process=peak.largest_command)
    ratio = memory[large] / memory[rows]
    results.add(f"rank peak RSS {large:,} / {rows:,} rows, streamed", ratio, "x", "<= 1.25x", at_most(ratio, 1.25))

    # Streaming against in-memory on the same cached rows.
    cached = generated(spark, rows).cache()
    cached.count()
    # The cheap MLP's figure is its second epoch (the first of the in-memory fit follows a read the
    # streamed fit spreads over every epoch); the big MLP's single epoch lasts minutes, start-up is noise.
    for spec, epochs_per_fit, repeats in ((CHEAP, 2, 2), (BIG, 1, 1)):
        epochs: dict[str, list[float]] = {"streamed": [], "in memory": []}
        settings = {"streamed": buffer.get("shuffleBufferRows"), "in memory": 10**9}

        def run(name: str, spec=spec, epochs=epochs, settings=settings, epochs_per_fit=epochs_per_fit) -> None:
            model, _ = fit(cached, spec, epochs_per_fit, shuffleBufferRows=settings[name])
            epochs[name].append(rows / model.history[-1]["seconds"])

        seconds = alternate({name: (lambda name=name: run(name)) for name in settings}, repeats=1 if args.quick else repeats)
        ratio = max(epochs["streamed"]) / max(epochs["in memory"])
        results.add(f"training samples/s, streamed / in memory, {spec['label']}, {rows:,} rows", ratio, "x", ">= 0.9x",
                    at_least(ratio, 0.9), streamed=max(epochs["streamed"]), in_memory=max(epochs["in memory"]),
                    fit_seconds_streamed=min(seconds["streamed"]), fit_seconds_in_memory=min(seconds["in memory"]))

    # The write: executors with pyarrow (what sparkneural does) against Spark's own Parquet writer.
    from sparkneural.data import materialize

    directory = tempfile.mkdtemp(prefix="sparkneural-bench-write-")

    def spark_writer() -> None:
        path = f"{directory}/spark-{time.monotonic_ns()}"
        cached.write.option("compression", "uncompressed").option("parquet.block.size", 8 * 2**20).parquet(path)

    def pyarrow_writer() -> None:
        with materialize(cached, "features", "label", data_dir=directory):
            pass

    seconds = alternate({"pyarrow": pyarrow_writer, "spark": spark_writer}, repeats=1 if args.quick else 3)
    ratio = min(seconds["pyarrow"]) / min(seconds["spark"])
    results.add(f"materialise {rows:,} rows: executors' pyarrow writer / Spark's Parquet writer, seconds", ratio, "x",
                pyarrow_seconds=min(seconds["pyarrow"]), spark_seconds=min(seconds["spark"]))

    # Scoring: transform into a no-op sink, the largest Python worker's peak.
    model, _ = fit(cached, {"architectureParams": small}, 1)
    scored = {}
    for n in (rows, 10 * rows):
        with PeakRss(WORKERS) as peak:
            started = time.perf_counter()
            model.transform(generated(spark, n)).write.format("noop").mode("overwrite").save()
        scored[n] = peak.largest_mb
        results.add(f"transform, {n:,} rows: largest Python worker peak RSS", scored[n], "MB",
                    seconds=time.perf_counter() - started, process=peak.largest_command)
    ratio = scored[10 * rows] / scored[rows]
    results.add(f"transform peak RSS {10 * rows:,} / {rows:,} rows", ratio, "x", "<= 1.25x", at_most(ratio, 1.25))
    results.finish(args.out)


if __name__ == "__main__":
    main()
