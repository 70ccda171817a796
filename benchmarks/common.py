"""What the benchmark scripts share: the machine and versions, figures with their targets, one table, the JSON.

A figure is one measured number with its unit, the target it is held to (if
any) and whether it met it. Every figure that compares two paths is a ratio
of two measurements taken in the same run, alternately, on the same cores:
the machines these run on are shared, so absolute times drift from run to run
while ratios hold much better.

Each script builds a ``Results``, adds figures, then ``finish()`` prints its
table and writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that spin while they wait make a 2-thread torch baseline 10-20x
# slower as soon as other work shares the cores (measured here: the cheap MLP's
# training loop fell from ~50k to ~1-2k samples/s at load average 10); threads
# that sleep while they wait cost little on an idle machine and keep the
# baselines honest on a busy one. Set before torch is imported anywhere.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from machine import git_commit, machine_info  # noqa: E402  (benchmarks/machine.py)

CORES = 2  # every Spark figure runs on local[2]; the plain baselines get as many threads
CHEAP = {"architecture": "mlp", "architectureParams": {"hiddenLayers": [256, 256]}, "inputShape": [64], "label": "cheap MLP 64-256-256-10"}
BIG = {"architecture": "mlp", "architectureParams": {"hiddenLayers": [1024, 1024, 1024]}, "inputShape": [64], "label": "big MLP 64-1024x3-10"}
LENET = {"architecture": "lenet", "architectureParams": {}, "inputShape": [1, 28, 28], "label": "LeNet 1x28x28"}
NO_GPU_NOTE = "no GPU machine was lent to this run: CPU figures only (gpu: null)"


# -- machine, versions ---------------------------------------------------------------
def gpu_info() -> dict | None:
    """The CUDA devices torch sees, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    devices = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return {"count": len(devices), "name": devices[0].name, "memory_gib": round(devices[0].total_memory / 2**30, 1)}


def versions() -> dict[str, str]:
    """Versions of the interpreter and the packages the figures depend on (without importing them)."""
    found = {"python": platform.python_version()}
    for name in ("pyspark", "pyarrow", "torch", "horovod", "numpy", "pandas", "petastorm", "transformers"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


# -- figures --------------------------------------------------------------------------
def at_least(value: float | None, threshold: float) -> bool | None:
    return None if value is None or not math.isfinite(value) else bool(value >= threshold)


def at_most(value: float | None, threshold: float) -> bool | None:
    return None if value is None or not math.isfinite(value) else bool(value <= threshold)


def figure(name: str, value: float | None, unit: str, target: str | None = None, met: bool | None = None,
           note: str = "", **detail: Any) -> dict[str, Any]:
    """One measured number: ``target`` as text (``">= 0.8x"``), ``met`` True/False (None: no target)."""
    record = {"figure": name, "value": _rounded(value), "unit": unit, "target": target, "met": met}
    if note:
        record["note"] = note
    if detail:
        record["detail"] = {k: _rounded(v) for k, v in detail.items()}
    return record


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def format_value(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) or isinstance(value, int):
        if unit == "x":
            return f"{value:.2f}x"
        if abs(value) >= 1000:
            return f"{value:,.0f} {unit}".strip()
        return f"{value:.3g} {unit}".strip()
    return f"{value} {unit}".strip()


def table(figures: list[dict[str, Any]], title: str | None = None) -> str:
    """A Markdown table: figure | value | target | met."""
    rows = [(f["figure"], format_value(f["value"], f["unit"]), f["target"] or "-",
             {True: "yes", False: "NO", None: "-"}[f["met"]]) for f in figures]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(("figure", "value", "target", "met"))]
    lines = [title] if title else []
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(("figure", "value", "target", "met"), widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


class Results:
    """The figures of one benchmark script, its settings, the machine and the versions."""

    def __init__(self, name: str, quick: bool, **settings: Any) -> None:
        self.name, self.quick, self.settings = name, quick, settings
        self.figures: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.machine = {**machine_info(), "gpu": gpu_info()}

    def add(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        record = figure(*args, **kwargs)
        self.figures.append(record)
        print(f"  {record['figure']}: {format_value(record['value'], record['unit'])}"
              + (f" (target {record['target']}: {'met' if record['met'] else 'missed'})" if record["target"] else ""),
              flush=True)
        return record

    def finish(self, out: str | None = None) -> dict[str, Any]:
        result = {
            "benchmark": self.name,
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            **({"commit": commit} if (commit := git_commit()) else {}),
            "quick": self.quick,
            "seconds": round(time.perf_counter() - self.started, 1),
            "settings": _rounded(self.settings),
            "figures": self.figures,
            **self.extra,
            "machine": {**self.machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
            "gpu_note": None if self.machine["gpu"] else NO_GPU_NOTE,
            "versions": versions(),
        }
        path = Path(out) if out else RESULTS / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print()
        print(table(self.figures, f"{self.name}{' (quick)' if self.quick else ''}: load average at start "
                                  f"{self.machine['load_average_at_start']}, {result['seconds']} s"))
        print(f"wrote {path}")
        return result


def arguments(description: str, **extra: tuple[type, Any, str]) -> argparse.Namespace:
    """``--quick`` and ``--out`` plus ``extra`` options given as name=(type, default, help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes in all")
    parser.add_argument("--out", default=None, help="where the JSON goes (default benchmarks/results/<name>.json)")
    for name, (kind, default, text) in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)
    return parser.parse_args()


# -- timing ---------------------------------------------------------------------------
def alternate(paths: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each path, run in turn ``repeats`` times, so that drifting load hits every path alike."""
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return seconds


# -- Spark and data -------------------------------------------------------------------
def send_by_value(module_name: str) -> None:
    """Pickle a benchmark script's functions by value: the ranks cannot import the script.

    Both picklers are told: pyspark's own copy of cloudpickle (Spark tasks,
    the ranks of sparkneural's fits) and the cloudpickle package (Horovod's
    launcher). A script run directly is ``__main__``, which both send by value already.
    """
    import cloudpickle
    from pyspark import cloudpickle as spark_cloudpickle

    if module_name != "__main__":
        for pickler in (cloudpickle, spark_cloudpickle):
            if module_name not in pickler.list_registry_pickle_by_value():
                pickler.register_pickle_by_value(sys.modules[module_name])


def spark_session(app: str, cores: int = CORES, conf: dict[str, str] | None = None):
    from sparkneural.session import get_spark, set_log_level

    settings = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(2 * cores), **(conf or {})}
    spark = get_spark(app, master=f"local[{cores}]", conf=settings)
    set_log_level(spark, "ERROR")
    return spark


def classification_data(rows: int, width: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features and labels from a random linear teacher (learnable, balanced enough)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width), dtype=np.float32)
    teacher = rng.standard_normal((width, classes)).astype(np.float32)
    y = (x @ teacher).argmax(axis=1).astype(np.int64)
    return x, y


class FrameFiles:
    """Numpy arrays -> a cached Spark DataFrame (features array<float>, label double), through Parquet.

    Writing Parquet with pyarrow and reading it back is the fastest way to hand
    Spark exactly the rows the plain baselines use.
    """

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="sparkneural-bench-")

    def frame(self, spark, x: np.ndarray, y: np.ndarray | None = None, partitions: int = CORES):
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = x.reshape(len(x), -1)
        offsets = pa.array(np.arange(len(flat) + 1, dtype=np.int32) * flat.shape[1])
        columns = {"features": pa.ListArray.from_arrays(offsets, pa.array(flat.reshape(-1)))}
        if y is not None:
            columns["label"] = pa.array(y.astype(np.float64))
        path = os.path.join(self.root, f"frame-{len(os.listdir(self.root))}")
        os.makedirs(path)
        table_ = pa.table(columns)
        step = math.ceil(len(flat) / partitions)
        for i in range(partitions):
            pq.write_table(table_.slice(i * step, step), os.path.join(path, f"part-{i}.parquet"))
        df = spark.read.parquet(path).repartition(partitions).cache()
        df.count()
        return df

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def plain_network(spec: dict[str, Any], classes: int = 10):
    """The torch module sparkneural would build for ``spec`` (CHEAP, BIG, LENET)."""
    from sparkneural.nn import build

    return build(spec["architecture"], inputShape=spec["inputShape"], outputSize=classes, **spec["architectureParams"])
