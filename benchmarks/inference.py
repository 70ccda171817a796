"""``TorchModel.transform`` throughput against plain torch, ``predict_batch_udf``, a row-at-a-time UDF and Spark's own ceiling.

For each network (cheap MLP 64-256-256-10, big MLP 64-1024-1024-1024-10,
LeNet on 1x28x28), with the same random weights everywhere:

* plain torch: the network over the same rows as one numpy array, batches of
  1024, 2 torch threads, ``inference_mode`` (and, as a reference that a busy
  machine disturbs less, 1 thread: twice its rate is what 2 cores reach
  with perfect scaling);
* sparkneural: ``TorchModel.transform`` writing 10 outputs per row as
  array<float> (``task="regression"``, so the output is the very column
  ``predict_batch_udf`` writes); the classifier's three MLlib columns are
  reported too (full sizes only);
* ``pyspark.ml.functions.predict_batch_udf``: the same network, batch 1024,
  array<float> output, one torch thread per task like sparkneural;
* a row-at-a-time pandas UDF (one forward pass per row) on a slice of the
  rows, to show what batching buys;
* the ceilings: Spark scanning the cached column with no Python at all, and
  Spark converting the rows to Arrow and handing them to Python that does
  nothing (``mapInArrow`` returning one count per batch). For cheap networks
  the second is the most any Python inference path can reach.

Stages of a chunk: ``sparkneural.estimators.scoring.score`` run in this process
(1 torch thread, Arrow batches of at most 10,000 rows and at least 4 of
them, the classifier's three MLlib columns) with its trace on: the seconds spent decoding, in forward passes and
encoding, and the share of decoding and encoding that ran while a forward
pass did (on a CPU the forward thread computes while the task's thread
decodes and encodes).

Spark runs on local[2] over a cached 2-partition DataFrame and writes to the
``noop`` sink. Paths run in turn ``--repeats`` times after one warm-up each;
each keeps its best run.

    .venv/bin/python benchmarks/inference.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIG, CHEAP, CORES, LENET, FrameFiles, Results, alternate, arguments, at_least, plain_network, spark_session  # noqa: E402

BATCH = 1024


def random_weights(spec: dict) -> dict[str, np.ndarray]:
    import torch

    torch.manual_seed(0)
    return {k: v.numpy() for k, v in plain_network(spec).state_dict().items()}


def torch_model(spec: dict, weights: dict[str, np.ndarray], task: str):
    """A fitted ``TorchModel`` holding ``weights`` (no training needed to time inference), with its default
    ``inferenceBatchSize`` (chosen per network)."""
    from sparkneural.estimators import TorchModel

    model = TorchModel()
    model.weights = weights
    model.architectureSpec = {"architecture": spec["architecture"], "architectureParams": spec["architectureParams"],
                              "inputShape": list(spec["inputShape"]), "outputSize": 10, "task": task}
    return model


def plain_torch(spec: dict, weights: dict[str, np.ndarray], x: np.ndarray, threads: int = CORES):
    import torch

    net = plain_network(spec)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    net.eval()
    shaped = x.reshape(len(x), *spec["inputShape"])

    def run() -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for i in range(0, len(shaped), BATCH):
                net(torch.from_numpy(shaped[i : i + BATCH])).numpy()

    return run


def _worker_network(spec: dict, weights: dict[str, np.ndarray]):
    import torch

    from sparkneural.nn import build

    net = build(spec["architecture"], inputShape=spec["inputShape"], outputSize=10, **spec["architectureParams"])
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return net.eval()


def predict_batch(spec: dict, weights: dict[str, np.ndarray]):
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import types as T

    shape = list(spec["inputShape"])
    width = int(np.prod(shape))

    def make_predict_fn():
        import torch

        torch.set_num_threads(1)
        net = _worker_network(spec, weights)

        def predict(inputs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(inputs.astype(np.float32, copy=False).reshape(-1, *shape))).numpy()

        return predict

    return predict_batch_udf(make_predict_fn, return_type=T.ArrayType(T.FloatType()), batch_size=BATCH,
                             input_tensor_shapes=[[width]])


def row_at_a_time(spec: dict, weights: dict[str, np.ndarray]):
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    shape = list(spec["inputShape"])
    cache: dict = {}

    def per_row(features):
        import torch

        torch.set_num_threads(1)
        if "net" not in cache:
            cache["net"] = _worker_network(spec, weights)
        net = cache["net"]
        with torch.inference_mode():
            return features.apply(lambda v: net(torch.tensor(v, dtype=torch.float32).reshape(1, *shape))[0].numpy())

    per_row.__annotations__ = {"features": pd.Series, "return": pd.Series}  # real types: this module's are strings
    return F.pandas_udf(per_row, T.ArrayType(T.FloatType()))


def arrow_handoff(batches):
    """Python's side of the ceiling: take each Arrow batch, give back its row count."""
    import pyarrow as pa

    for batch in batches:
        yield pa.RecordBatch.from_arrays([pa.array([batch.num_rows], pa.int64())], names=["n"])


def stage_overlap(spec: dict, weights: dict[str, np.ndarray], x: np.ndarray, rows_per_batch: int = 10_000) -> dict[str, float]:
    """Seconds per stage of ``scoring.score`` over ``x`` as Arrow batches, and how much of decoding and
    encoding overlapped a forward pass."""
    import pyarrow as pa
    import torch

    from sparkneural.data import arrow
    from sparkneural.estimators import inference, scoring
    from sparkneural.training.tasks import get_task

    torch.set_num_threads(1)
    shape, width = tuple(spec["inputShape"]), x.shape[1]
    batches = [pa.ListArray.from_arrays(pa.array(np.arange(len(part) + 1, dtype=np.int32) * width), pa.array(part.reshape(-1)))
               for part in np.array_split(x, max(4, len(x) // rows_per_batch))]
    architecture = {"architecture": spec["architecture"], "architectureParams": spec["architectureParams"],
                    "inputShape": list(shape), "outputSize": 10}
    net, task = inference.load_network(architecture, weights), get_task("classification")
    largest, total = scoring.activation_bytes(net, np.zeros((2, *shape), np.float32), task)
    chunk = scoring.auto_batch_size(largest, total, "cpu", rows_per_batch)
    outputs = [("raw", arrow.dense_vectors), ("probability", arrow.dense_vectors), ("prediction", arrow.doubles)]

    def run(trace=None) -> None:
        for _ in scoring.score(iter(batches), column=lambda array: array, width=width, batch_size=chunk, outputs=outputs,
                               label="features", trace=trace,
                               network=lambda c: scoring.launch(net, c.reshape(-1, *shape), task, None, "32", "features")):
            pass

    run()  # warm-up
    trace: list[tuple[str, float, float]] = []
    started = time.perf_counter()
    run(trace)
    wall = time.perf_counter() - started
    forward = sorted((a, b) for stage, a, b in trace if stage == "forward")
    seconds = {stage: sum(b - a for s, a, b in trace if s == stage) for stage in ("decode", "forward", "encode")}
    host = [(a, b) for stage, a, b in trace if stage != "forward"]
    inside = sum(max(0.0, min(b, fb) - max(a, fa)) for a, b in host for fa, fb in forward)
    host_seconds = seconds["decode"] + seconds["encode"]
    return {"chunk_rows": chunk, "wall_s": wall, "decode_s": seconds["decode"], "forward_s": seconds["forward"],
            "encode_s": seconds["encode"], "host_overlapped_share": inside / host_seconds if host_seconds else None,
            "serial_s": sum(seconds.values())}


def noop(df) -> None:
    df.write.format("noop").mode("overwrite").save()


def main() -> dict:
    args = arguments(__doc__.splitlines()[0], repeats=(int, 3, "timed runs of each path"),
                     scale=(float, 1.0, "multiply every size (to try the script out)"))
    quick = args.quick
    repeats = args.repeats
    # Quick sizes still give each path runs of about a second: shorter ones are mostly Spark's job overhead and noise.
    sizes = {"cheap": 100_000 if quick else 200_000, "big": 50_000 if quick else 100_000, "lenet": 6_000 if quick else 20_000}
    sizes = {k: max(1000, int(v * args.scale)) for k, v in sizes.items()}
    per_row_rows = {k: max(200, v // 20) for k, v in sizes.items()}
    results = Results("inference", quick, rows=sizes, row_at_a_time_rows=per_row_rows, batch=BATCH, repeats=repeats,
                      spark=f"local[{CORES}], 2 partitions, 1 torch thread per task", plain_threads=CORES)
    spark = spark_session("sparkneural-bench-inference")
    files = FrameFiles()
    try:
        # targets: (of the plain torch loop, of predict_batch_udf, of the Arrow hand-off ceiling)
        for key, spec, targets in (("cheap", CHEAP, (None, 2.0, 0.8)), ("big", BIG, (0.95, 1.0, None)), ("lenet", LENET, (0.8, 1.2, None))):
            rows = sizes[key]
            width = int(np.prod(spec["inputShape"]))
            x = np.random.default_rng(1).standard_normal((rows, width), dtype=np.float32)
            df = files.frame(spark, x)
            weights = random_weights(spec)
            regression, classifier = torch_model(spec, weights, "regression"), torch_model(spec, weights, "classification")
            udf = predict_batch(spec, weights)
            paths = {
                "plain torch": plain_torch(spec, weights, x),
                "plain torch, 1 thread": plain_torch(spec, weights, x, threads=1),
                "sparkneural transform": lambda: noop(regression.transform(df)),
                "predict_batch_udf": lambda: noop(df.select(udf("features").alias("prediction"))),
                "Arrow hand-off ceiling": lambda: noop(df.mapInArrow(arrow_handoff, "n long")),
                "Spark scan ceiling": lambda: noop(df.select("features")),
            }
            if not quick:
                paths["sparkneural transform, classifier columns"] = lambda: noop(classifier.transform(df))
            for run in paths.values():  # warm-up: Python workers, networks built and cached
                run()
            seconds = alternate(paths, repeats)
            best = {name: min(s) for name, s in seconds.items()}
            rate = {name: rows / s for name, s in best.items()}
            subset = df.limit(per_row_rows[key]).cache()
            subset.count()
            per_row = row_at_a_time(spec, weights)
            noop(subset.select(per_row("features")))  # warm-up
            started = time.perf_counter()
            noop(subset.select(per_row("features")))
            rate["row-at-a-time pandas UDF"] = per_row_rows[key] / (time.perf_counter() - started)
            subset.unpersist()
            df.unpersist()
            ceilings = {"spark_scan_rows_per_s": rate["Spark scan ceiling"], "arrow_handoff_rows_per_s": rate["Arrow hand-off ceiling"]}
            ours = rate["sparkneural transform"]
            label = spec["label"]
            plain_target, udf_target, ceiling_target = targets
            results.add(f"inference {label}: transform / plain torch", ours / rate["plain torch"], "x",
                        target=f">= {plain_target}x" if plain_target else None,
                        met=at_least(ours / rate["plain torch"], plain_target) if plain_target else None,
                        transform_rows_per_s=ours, plain_rows_per_s=rate["plain torch"],
                        plain_one_thread_rows_per_s=rate["plain torch, 1 thread"],
                        transform_over_twice_one_thread=ours / (CORES * rate["plain torch, 1 thread"]), **ceilings)
            results.add(f"inference {label}: transform / predict_batch_udf", ours / rate["predict_batch_udf"], "x",
                        target=f">= {udf_target}x", met=at_least(ours / rate["predict_batch_udf"], udf_target),
                        transform_rows_per_s=ours, predict_batch_udf_rows_per_s=rate["predict_batch_udf"], **ceilings)
            results.add(f"inference {label}: transform / row-at-a-time UDF", ours / rate["row-at-a-time pandas UDF"], "x",
                        transform_rows_per_s=ours, row_at_a_time_rows_per_s=rate["row-at-a-time pandas UDF"], **ceilings)
            results.add(f"inference {label}: transform / Arrow hand-off ceiling", ours / rate["Arrow hand-off ceiling"], "x",
                        target=f">= {ceiling_target}x" if ceiling_target else None,
                        met=at_least(ours / rate["Arrow hand-off ceiling"], ceiling_target) if ceiling_target else None,
                        transform_rows_per_s=ours, **ceilings)
            results.add(f"inference {label}: transform rows/s", ours, "rows/s",
                        classifier_columns_rows_per_s=rate.get("sparkneural transform, classifier columns"), **ceilings)
            stages = stage_overlap(spec, weights, x)
            results.add(f"inference {label}: decode and encode overlapped with forward passes", 100 * stages["host_overlapped_share"], "%",
                        **stages)
            results.extra.setdefault("rows_per_s", {})[key] = rate
            results.extra.setdefault("runs_seconds", {})[key] = seconds
    finally:
        files.close()
        spark.stop()
    return results.finish(args.out)


if __name__ == "__main__":
    main()
