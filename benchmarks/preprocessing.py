"""``MuLawEncoder`` and ``SequenceWindower`` on Spark against the same work in numpy on the driver, per core.

10M float32 samples in [-1, 1] (2M with ``--quick``), held as 10 series of
equal length, one array per row (the form ``read_wav`` gives), cached on
local[2]:

* mu-law: ``MuLawEncoder`` (mu 255, quantised to classes 0..255, written to
  the ``noop`` sink) against the same formula in numpy over one array
  (float64 like Spark, one thread);
* windows: ``SequenceWindower`` (64 steps, a new window every 16 steps,
  array input, written to the ``noop`` sink) against numpy's
  ``sliding_window_view`` copied out to one (windows, 64) array per series.

Spark runs 2 tasks on 2 cores and numpy one thread, so the figure is Spark's
samples/s divided by 2 over numpy's. Runs alternate; each keeps its best.
Beside them: the scan of the cached samples alone (the ceiling of any Spark
path), an ``F.transform`` that returns each element unchanged (the ceiling
of any Spark expression over array elements: lambdas are interpreted, one
element at a time) and mu-law in numpy inside ``mapInArrow`` (what a Python
path reaches).

    .venv/bin/python benchmarks/preprocessing.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CORES, FrameFiles, Results, alternate, arguments, at_least, spark_session  # noqa: E402

SERIES, MU, WINDOW, STEP = 10, 255, 64, 16
PER_CORE_TARGET = 0.5


def numpy_mulaw(x: np.ndarray, mu: int = MU) -> np.ndarray:
    clipped = np.clip(x.astype(np.float64), -1.0, 1.0)
    companded = np.sign(clipped) * np.log1p(mu * np.abs(clipped)) / np.log1p(mu)
    return np.floor((companded + 1.0) / 2.0 * mu + 0.5).astype(np.int32)


def numpy_windows(series: np.ndarray) -> list[np.ndarray]:
    from numpy.lib.stride_tricks import sliding_window_view

    return [np.ascontiguousarray(sliding_window_view(s, WINDOW)[::STEP]) for s in series]


def mulaw_in_arrow(batches):
    """mu-law in numpy over each Arrow batch's flat values: what a Python path would reach."""
    import pyarrow as pa

    for batch in batches:
        samples = batch.column(0)
        classes = numpy_mulaw(samples.flatten().to_numpy(zero_copy_only=False))
        yield pa.RecordBatch.from_arrays([pa.ListArray.from_arrays(samples.offsets, pa.array(classes))], names=["classes"])


def noop(df) -> None:
    df.write.format("noop").mode("overwrite").save()


def main() -> dict:
    args = arguments(__doc__.splitlines()[0], repeats=(int, 3, "timed runs of each path"),
                     scale=(float, 1.0, "multiply every size (to try the script out)"))
    samples = int((2_000_000 if args.quick else 10_000_000) * args.scale)
    length = samples // SERIES
    results = Results("preprocessing", args.quick, samples=SERIES * length, series=SERIES, mu=MU, windowSize=WINDOW,
                      step=STEP, repeats=args.repeats, spark=f"local[{CORES}], {CORES} partitions", numpy_threads=1)
    spark = spark_session("sparkneural-bench-preprocessing")
    files = FrameFiles()
    try:
        from pyspark.sql import functions as F

        from sparkneural.preprocessing import MuLawEncoder, SequenceWindower

        series = np.random.default_rng(2).uniform(-1, 1, (SERIES, length)).astype(np.float32)
        df = files.frame(spark, series).withColumnRenamed("features", "samples").cache()
        df.count()
        encoder = MuLawEncoder(inputCol="samples", outputCol="classes")
        windower = SequenceWindower(inputCol="samples", outputCol="window", windowSize=WINDOW, step=STEP)
        flat = series.reshape(-1)
        paths = {
            "MuLawEncoder": lambda: noop(encoder.transform(df).select("classes")),
            "numpy mu-law": lambda: numpy_mulaw(flat),
            "SequenceWindower": lambda: noop(windower.transform(df)),
            "numpy windows": lambda: numpy_windows(series),
            "Spark scan": lambda: noop(df.select("samples")),
            "identity transform": lambda: noop(df.select(F.transform("samples", lambda v: v))),
            "numpy in mapInArrow": lambda: noop(df.select("samples").mapInArrow(mulaw_in_arrow, "classes array<int>")),
        }
        for name in ("MuLawEncoder", "SequenceWindower", "identity transform", "numpy in mapInArrow"):
            paths[name]()  # warm-up: code generation, Python workers
        seconds = alternate(paths, args.repeats)
        rate = {name: SERIES * length / min(s) for name, s in seconds.items()}
        row = encoder.transform(df).select("samples", "classes").first()
        expected = numpy_mulaw(np.asarray(row["samples"][:1000], dtype=np.float32))
        assert np.array_equal(np.asarray(row["classes"][:1000]), expected), "MuLawEncoder and numpy disagree"
        windows = sum(len(w) for w in numpy_windows(series))
        assert windower.transform(df).count() == windows, "SequenceWindower and numpy count different windows"
        for name, reference in (("MuLawEncoder", "numpy mu-law"), ("SequenceWindower", "numpy windows")):
            per_core = rate[name] / CORES / rate[reference]
            results.add(f"preprocessing {name}: Spark per core / numpy (1 core)", per_core, "x",
                        target=f">= {PER_CORE_TARGET}x", met=at_least(per_core, PER_CORE_TARGET),
                        spark_samples_per_s=rate[name], numpy_samples_per_s=rate[reference],
                        spark_scan_samples_per_s=rate["Spark scan"])
        ceiling = rate["Spark scan"] / CORES / rate["numpy mu-law"]
        results.add("preprocessing ceiling: Spark scan of the cached samples per core / numpy mu-law", ceiling, "x",
                    note="the most any Spark path can reach here: reading the cached arrays, no computation")
        lambdas = rate["identity transform"] / CORES / rate["numpy mu-law"]
        results.add("preprocessing ceiling of array lambdas: F.transform(x -> x) per core / numpy mu-law", lambdas, "x",
                    note="an F.transform that computes nothing: what evaluating any lambda per element costs")
        python_path = rate["numpy in mapInArrow"] / CORES / rate["numpy mu-law"]
        results.add("preprocessing mu-law in numpy inside mapInArrow per core / numpy", python_path, "x",
                    note="what a Python (Arrow + numpy) MuLawEncoder would reach; the Transformer uses Spark expressions")
        results.extra["windows"] = windows
        results.extra["runs_seconds"] = seconds
    finally:
        files.close()
        spark.stop()
    return results.finish(args.out)


if __name__ == "__main__":
    main()
