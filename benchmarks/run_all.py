"""Run every benchmark, print one table of all their figures, write benchmarks/results/summary.json.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only training inference ...]

Each script runs in its own process (its own SparkSession) and writes
benchmarks/results/<name>.json; this collects their figures. ``make bench``
runs the full sizes, ``make bench-quick`` the ``--quick`` ones (a few
minutes in all).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NO_GPU_NOTE, RESULTS, ROOT, figure, git_commit, gpu_info, machine_info, table, versions  # noqa: E402

# Cheapest first, so a broken set-up shows early.
SCRIPTS = {
    "wavenet_generation": "wavenet_generation.py",
    "preprocessing": "preprocessing.py",
    "inference": "inference.py",
    "bert_throughput": "bert_throughput.py",
    "training": "training.py",
    "scaling": "scaling.py",
    "streaming": "streaming.py",
    "accuracy_vs_mllib": "accuracy_vs_mllib.py",
    "gpu": "gpu.py",  # only where torch sees a GPU
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script with --quick")
    parser.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), help="run only these")
    args = parser.parse_args()
    machine = {**machine_info(), "gpu": gpu_info()}
    names = [n for n in args.only or list(SCRIPTS) if n != "gpu" or machine["gpu"]]
    started = time.perf_counter()
    figures, seconds, failed = [], {}, []
    for name in names:
        command = [sys.executable, str(ROOT / "benchmarks" / SCRIPTS[name])] + (["--quick"] if args.quick else [])
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        began = time.perf_counter()
        code = subprocess.call(command, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        seconds[name] = round(time.perf_counter() - began, 1)
        path = RESULTS / ("gpu-quick.json" if name == "gpu" and args.quick else f"{name}.json")  # a quick GPU run leaves gpu.json alone
        if code != 0 or not path.exists():
            failed.append(name)
            figures.append({"benchmark": name, **figure(f"{name}: failed (exit code {code})", None, "")})
            continue
        for record in json.loads(path.read_text()).get("figures", []):
            figures.append({"benchmark": name, **record})
    if machine["gpu"] is None:
        figures.append({"benchmark": "gpu", **figure("GPU: training, inference and BERT figures on a GPU", None, "",
                                                      target="benchmarks/gpu.py on a GPU host", note=NO_GPU_NOTE)})
    targets = [f for f in figures if f["met"] is not None]
    summary = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        **({"commit": commit} if (commit := git_commit()) else {}),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_script": seconds,
        "failed": failed,
        "targets_met": sum(bool(f["met"]) for f in targets),
        "targets": len(targets),
        "figures": figures,
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "gpu_note": None if machine["gpu"] else NO_GPU_NOTE,
        "versions": versions(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(table(figures, f"sparkneural benchmarks{' (quick)' if args.quick else ''}: {machine['cores_available']} cores, "
                         f"{machine['memory_gib']} GiB, gpu: {machine['gpu'] or 'none'}; load average at start "
                         f"{machine['load_average_at_start']}; {summary['seconds']} s; "
                         f"targets met {summary['targets_met']}/{summary['targets']}"))
    print(f"wrote {RESULTS / 'summary.json'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
