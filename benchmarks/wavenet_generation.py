"""Samples/s of fast (per-layer queues) against naive (recompute the receptive field) WaveNet generation.

For each receptive field, one block of kernel-2 layers with dilations
1, 2, ..., 2^(n-1) (the fewest n with 2^n + 1 >= the field; the exact field,
including the initial causal convolution, is reported), 256 classes,
residual/dilation channels 32, skip channels 64, float32, one torch thread.
The naive generator continues a prime of receptive_field classes, so every
step runs the network on a full window; the fast generator's step costs the
same from the first sample (fixed-size queues) and it runs at least 2 x RF
samples. Best of ``--repeats`` runs (``sparkneural.nn.wavenet.generation_speed``).

    .venv/bin/python benchmarks/wavenet_generation.py [--quick] [--fields 256 1024] [--samples 200] [--repeats 3]

``--quick`` runs 100 naive samples, best of 2. The target: fast >= 10x naive.

Prints a table and writes benchmarks/results/wavenet_generation.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparkneural.nn.wavenet import generation_speed  # noqa: E402


from machine import git_commit, machine_info  # noqa: E402  (benchmarks/machine.py)
from common import NO_GPU_NOTE, at_least, figure, gpu_info, table  # noqa: E402  (benchmarks/common.py)

RATIO_TARGET = 10.0


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 naive samples, best of 2")
    parser.add_argument("--fields", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--samples", type=int, default=None, help="naive samples per run (fast: at least 2 x RF; default 200)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "wavenet_generation.json"))
    args = parser.parse_args(argv)
    args.samples = args.samples or (100 if args.quick else 200)
    args.repeats = args.repeats or (2 if args.quick else 3)
    torch.set_num_threads(1)
    machine = {**machine_info(), "torch_threads": torch.get_num_threads(), "gpu": gpu_info()}
    rows = [generation_speed(field, args.samples, repeats=args.repeats) for field in args.fields]
    figures = [
        figure(f"WaveNet generation, receptive field {r['receptive_field']}: fast / naive", r["ratio"], "x",
               target=f">= {RATIO_TARGET:g}x", met=at_least(r["ratio"], RATIO_TARGET),
               fast_samples_per_s=r["fast_samples_per_s"], naive_samples_per_s=r["naive_samples_per_s"])
        for r in rows
    ]
    result = {
        "benchmark": "wavenet_generation",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        **({"commit": commit} if (commit := git_commit()) else {}),
        "quick": args.quick,
        "figures": figures,
        "settings": {"residualChannels": 32, "dilationChannels": 32, "skipChannels": 64, "dtype": "float32", "repeats": args.repeats},
        "results": [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "gpu_note": None if machine["gpu"] else NO_GPU_NOTE,
        "versions": versions(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average at start {machine['load_average_at_start']}, one torch thread")
    print(f"| {'receptive field':>15} | {'layers':>6} | {'fast samples/s':>14} | {'naive samples/s':>15} | {'fast / naive':>12} |")
    print(f"|{'-' * 17}|{'-' * 8}|{'-' * 16}|{'-' * 17}|{'-' * 14}|")
    for r in rows:
        print(
            f"| {r['receptive_field']:>15} | {r['layersPerBlock']:>6} | {r['fast_samples_per_s']:>14.0f} "
            f"| {r['naive_samples_per_s']:>15.1f} | {r['ratio']:>12.1f} |"
        )
    print(table(figures))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
