"""Data-parallel scaling: steady-state samples/s of 2 ranks over 1 rank, Horovod and TorchDistributor.

The big MLP 64-1024-1024-1024-10 (compute-bound), batch 256 per rank, on
local[2]. Every rank runs one torch thread, so 2 ranks have twice the cores
of 1: the speed-up says how much of the second core data parallelism turns
into samples/s (gradient allreduce and synchronisation are the loss). For
reference the 1-rank run is repeated with 2 torch threads (the same 2 cores
used by intra-op parallelism instead). Samples/s are of the best epoch after
the first. (The 2-thread reference is left out with ``--quick``.)

Beside the speed-up, what bounds it, measured in 2 Horovod ranks on the same
cores: the time of one training step (compute only, one thread) with the
other rank idle and with both ranks computing at once, and of one allreduce
of all the gradients (8.7 MB) alone. Data parallelism gives at most
2 x alone / (both + allreduce): the second core adds only what running two
at once leaves of it, and on 2 busy cores the allreduce's copies and sums
cannot hide behind the other rank's work. Then a step of Horovod's
DistributedOptimizer, and the CPU its main thread and its other threads
(Horovod's background thread: negotiation, fusion, Gloo's allreduce) spend
per step: on 2 ranks sharing 2 cores, what the other threads spend is taken
from the other rank's compute. The same step once more, waiting for the
allreduces in short sleeps before ``step()`` rather than in Horovod's
``synchronize()``, which spins on ``sched_yield``: whether that spin takes
the cores from the background threads. The step costs run with sparkneural's Horovod
defaults under the driver's environment, as the fits' ranks do. For each
backend's 2-rank fit the same split is read from outside: the CPU of the
Python workers' main threads and of their other threads (Horovod's or
torch.distributed's communication, also pyarrow's readers) per training
step of a rank, over the whole fit.

``--horovod-env 'defaults;HOROVOD_CYCLE_TIME=5;...'`` measures instead
Horovod alone, 2 ranks over one 1-rank run, under each setting (variables
laid over the driver's environment, which the ranks get), the settings in
turn ``--repeats`` times, with the step costs under each; it writes
benchmarks/results/scaling-horovod-settings.json.

    .venv/bin/python benchmarks/scaling.py [--quick] [--horovod-env SETTINGS [--repeats 2]]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIG, CORES, FrameFiles, Results, arguments, at_least, classification_data, send_by_value, spark_session  # noqa: E402
from training import estimator_for, steady  # noqa: E402

SPEEDUP_TARGET = 1.6


def with_threads(estimator, threads: int):
    """``estimator`` whose ranks each run ``threads`` torch threads."""
    cls = type(estimator)

    class Threaded(cls):  # type: ignore[misc, valid-type]
        def _spec(self, *args, **kwargs):
            return dataclasses.replace(super()._spec(*args, **kwargs), threads=threads)

    copy = estimator.copy()
    copy.__class__ = Threaded
    return copy


class WorkerThreadCpu:
    """CPU seconds of Spark's Python workers (the ranks among them) by thread while in use, sampled in a thread.

    A rank's communication threads (Horovod's background thread, Gloo's) live
    only as long as its fit, so their CPU is read while they run: every
    ``interval`` seconds, each thread's last reading is kept.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.first: dict[tuple[int, int], float] = {}
        self.last: dict[tuple[int, int], float] = {}
        self._interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sweep(self, initial: bool) -> None:
        for process in psutil.process_iter(["cmdline"]):
            try:
                command = process.info["cmdline"] or [""]
                if not (command[0].startswith(sys.prefix) and "pyspark.daemon" in " ".join(command)):
                    continue
                for thread in process.threads():
                    key = (process.pid, thread.id)
                    used = thread.user_time + thread.system_time
                    self.first.setdefault(key, used if initial else 0.0)
                    self.last[key] = used
            except psutil.Error:
                pass

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sweep(initial=False)

    def __enter__(self) -> "WorkerThreadCpu":
        self._sweep(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sweep(initial=False)

    def seconds(self) -> tuple[float, float]:
        """(CPU seconds of the workers' main threads, of their other threads) over the time inside ``with``."""
        used = {key: self.last[key] - self.first[key] for key in self.last}
        main = sum(v for (pid, tid), v in used.items() if pid == tid)
        return main, sum(used.values()) - main


def samples_per_s(spark_df, rows: int, epochs: int, ranks: int, backend: str, threads: int,
                  cpu: dict | None = None) -> tuple[float, list[float]]:
    """Steady samples/s and epoch seconds; with ``cpu`` (a dict), the workers' CPU ms per training step put there."""
    estimator = with_threads(estimator_for(BIG, epochs, 256, ranks=ranks, backend=backend), threads)
    sampler = WorkerThreadCpu()
    try:
        with sampler:
            history = estimator.fit(spark_df).history
    except Exception as err:  # noqa: BLE001
        # TorchDistributor picks its rendezvous port in one process and binds it in another,
        # seconds later; on a busy machine another connection can take it first (EADDRINUSE).
        if backend != "torch_distributor":
            raise
        print(f"torch_distributor fit failed ({str(err).splitlines()[0][:120]}); trying once more", flush=True)
        RETRIES.append(backend)
        with sampler:
            history = estimator.fit(spark_df).history
    seconds = [h["seconds"] for h in history]
    if cpu is not None:
        steps = ranks * epochs * -(-rows // ranks // 256)
        main, other = sampler.seconds()
        cpu.update(worker_main_thread_cpu_ms_per_rank_step=1000 * main / steps,
                   worker_other_threads_cpu_ms_per_rank_step=1000 * other / steps)
    return rows / steady(seconds), seconds


RETRIES: list[str] = []
STEPS = 30


def _step_costs_in_rank() -> dict[str, float]:
    """In a Horovod rank (one torch thread): ms per training step without communication, per gradient allreduce,
    and per step of Horovod's DistributedOptimizer with the CPU its threads spend on it."""
    import os
    import time

    import horovod.torch as hvd
    import torch

    from sparkneural.nn import build

    torch.set_num_threads(1)
    hvd.init()
    torch.manual_seed(hvd.rank())
    net = build(BIG["architecture"], inputShape=BIG["inputShape"], outputSize=10, **BIG["architectureParams"])
    optimizer = torch.optim.Adam(net.parameters())
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    flat = torch.zeros(sum(p.numel() for p in net.parameters()))

    def per_call_ms(work, ranks: tuple[int, ...] = (0, 1)) -> float:
        hvd.allreduce(torch.zeros(1), name=f"start {work.__name__} {ranks}")  # both ranks start together
        if hvd.rank() not in ranks:
            hvd.allreduce(torch.zeros(1), name=f"end {work.__name__} {ranks}")
            return float("nan")
        for _ in range(3):
            work()
        began = time.perf_counter()
        for _ in range(STEPS):
            work()
        seconds = time.perf_counter() - began
        hvd.allreduce(torch.zeros(1), name=f"end {work.__name__} {ranks}")
        return 1000 * seconds / STEPS

    def allreduce():
        hvd.allreduce(flat, name="gradients")

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    # A network of its own: DistributedOptimizer hooks its parameters' gradients (an allreduce each backward).
    synced = build(BIG["architecture"], inputShape=BIG["inputShape"], outputSize=10, **BIG["architectureParams"])
    distributed = hvd.DistributedOptimizer(torch.optim.Adam(synced.parameters()), named_parameters=synced.named_parameters())

    def distributed_step():
        distributed.zero_grad()
        torch.nn.functional.cross_entropy(synced(x), y).backward()
        distributed.step()

    def sleeping_step():
        # synchronize() waits for the allreduces spinning (sched_yield) at 100% of a core; waiting
        # here in short sleeps instead leaves that core to Horovod's background threads.
        distributed.zero_grad()
        torch.nn.functional.cross_entropy(synced(x), y).backward()
        handles = [h for h, _ in distributed._handles.values() if h is not None and not callable(h)]
        while not all(hvd.poll(h) for h in handles):
            time.sleep(0.0002)
        distributed.step()

    def cpu_per_step(work) -> tuple[float, float, float]:
        """(wall ms, main thread CPU ms, other threads' CPU ms) per step of ``work`` (warm-up steps counted)."""
        before = thread_cpu_seconds()
        wall = per_call_ms(work)
        after = thread_cpu_seconds()
        main = 1000 * (after.get(os.getpid(), 0) - before.get(os.getpid(), 0)) / (STEPS + 3)
        other = 1000 * sum(after[t] - before.get(t, 0) for t in after if t != os.getpid()) / (STEPS + 3)
        return wall, main, other

    alone = per_call_ms(step, ranks=(0,))
    both = per_call_ms(step)
    allreduce_ms = per_call_ms(allreduce)
    training_ms, main_ms, other_ms = cpu_per_step(distributed_step)
    sleeping_ms, sleeping_main_ms, sleeping_other_ms = cpu_per_step(sleeping_step)
    alone = min(alone, per_call_ms(step, ranks=(0,)))  # before and after: drifting load hits both alike
    return {"rank": hvd.rank(), "compute_step_ms_other_rank_idle": alone, "compute_step_ms_both_ranks_busy": both,
            "allreduce_ms": allreduce_ms, "gradient_mb": 4 * flat.numel() / 1e6,
            "distributed_step_ms": training_ms, "distributed_step_cpu_ms_main_thread": main_ms,
            "distributed_step_cpu_ms_other_threads": other_ms, "sleeping_wait_step_ms": sleeping_ms,
            "sleeping_wait_step_cpu_ms_main_thread": sleeping_main_ms,
            "sleeping_wait_step_cpu_ms_other_threads": sleeping_other_ms,
            "cycle_time_ms": os.environ.get("HOROVOD_CYCLE_TIME", "Horovod's default")}


def thread_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by thread id (Linux)."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def step_costs() -> dict[str, float]:
    import horovod.spark

    from sparkneural.training.backends.horovod import DEFAULTS

    send_by_value(__name__)
    # The settings sparkneural's ranks get where the driver's environment says nothing.
    results = horovod.spark.run(_step_costs_in_rank, num_proc=2, use_gloo=True, verbose=0, env={**DEFAULTS, **os.environ})
    return next(r for r in results if r["rank"] == 0)


def driver_env(setting: str):
    """``setting`` ("NAME=VALUE,NAME=VALUE", "" for none) in this driver's environment, which the ranks get."""
    from sparkneural.training.backends.barrier import environment

    return environment(dict(item.split("=", 1) for item in setting.split(",") if item))


def horovod_variants(args, results: Results, df, rows: int, epochs: int) -> None:
    """2-rank Horovod samples/s and step costs under each of ``args.horovod_env``'s settings, in turn, over one 1-rank run."""
    one, one_epochs = samples_per_s(df, rows, epochs, 1, "horovod", threads=1)
    found: dict[str, dict] = {setting: {"two_ranks_samples_per_s": []} for setting in args.horovod_env}
    for _ in range(args.repeats):
        for setting in args.horovod_env:
            cpu: dict[str, float] = {}
            with driver_env(setting):
                two, _ = samples_per_s(df, rows, epochs, 2, "horovod", threads=1, cpu=cpu)
            found[setting]["two_ranks_samples_per_s"].append(two)
            for key, value in cpu.items():
                found[setting].setdefault(key, []).append(value)
    for setting in args.horovod_env:
        with driver_env(setting):
            found[setting].update(step_costs())
    for setting, detail in found.items():
        two = max(detail["two_ranks_samples_per_s"])
        results.add(f"scaling {BIG['label']}, horovod, {setting or 'sparkneural defaults'}: 2 ranks / 1 rank", two / one, "x",
                    one_rank_samples_per_s=one, one_rank_epoch_seconds=one_epochs, **detail)


def main() -> dict:
    args = arguments(__doc__.splitlines()[0], scale=(float, 1.0, "multiply every size (to try the script out)"),
                     horovod_env=(str, "", "instead: Horovod alone under settings separated by ';', each "
                                           "'NAME=VALUE,NAME=VALUE' or 'defaults', e.g. 'defaults;HOROVOD_CYCLE_TIME=5'"),
                     repeats=(int, 2, "with --horovod-env: 2-rank fits per setting"))
    if args.horovod_env:
        args.horovod_env = ["" if item.strip() == "defaults" else item.strip() for item in args.horovod_env.split(";")]
        # Settings compared against each other: only Horovod, no bound.
        rows = max(2000, int((8_000 if args.quick else 40_000) * args.scale))
        results = Results("scaling-horovod-settings", args.quick, rows=rows, epochs=3, batchSize=256,
                          network=BIG["label"], spark=f"local[{CORES}]", threads_per_rank=1, repeats=args.repeats)
        spark = spark_session("sparkneural-bench-scaling")
        files = FrameFiles()
        try:
            x, y = classification_data(rows, 64, seed=5)
            horovod_variants(args, results, files.frame(spark, x, y), rows, 3)
        finally:
            files.close()
            spark.stop()
        return results.finish(args.out)
    rows = max(2000, int((8_000 if args.quick else 40_000) * args.scale))
    epochs = 3  # steady state: the best epoch after the first
    results = Results("scaling", args.quick, rows=rows, epochs=epochs, batchSize=256, network=BIG["label"],
                      spark=f"local[{CORES}]", threads_per_rank=1)
    spark = spark_session("sparkneural-bench-scaling")
    files = FrameFiles()
    try:
        x, y = classification_data(rows, 64, seed=5)
        df = files.frame(spark, x, y)
        for backend in ("horovod", "torch_distributor"):
            one, one_epochs = samples_per_s(df, rows, epochs, 1, backend, threads=1)
            cpu: dict[str, float] = {}
            two, two_epochs = samples_per_s(df, rows, epochs, 2, backend, threads=1, cpu=cpu)
            detail = {"one_rank_samples_per_s": one, "two_ranks_samples_per_s": two,
                      "one_rank_epoch_seconds": one_epochs, "two_ranks_epoch_seconds": two_epochs, **cpu}
            if backend == "horovod" and not args.quick:
                wide, wide_epochs = samples_per_s(df, rows, epochs, 1, backend, threads=2)
                detail.update(one_rank_two_threads_samples_per_s=wide, one_rank_two_threads_epoch_seconds=wide_epochs,
                              two_ranks_over_one_rank_two_threads=two / wide)
            results.add(f"scaling {BIG['label']}, {backend}: 2 ranks / 1 rank", two / one, "x",
                        target=f">= {SPEEDUP_TARGET}x", met=at_least(two / one, SPEEDUP_TARGET), **detail)
        costs = step_costs()
        alone, both, allreduce = (costs[k] for k in ("compute_step_ms_other_rank_idle", "compute_step_ms_both_ranks_busy", "allreduce_ms"))
        results.add("scaling bound: 2 x step alone / (step with both ranks busy + allreduce)", 2 * alone / (both + allreduce), "x",
                    note=f"a step of 256 rows on one thread takes {alone:.1f} ms alone and {both:.1f} ms while the other "
                         f"rank computes too; one allreduce of the {costs['gradient_mb']:.1f} MB of gradients takes "
                         f"{allreduce:.1f} ms; a bound only where the allreduce cannot overlap the backward pass", cores_bound=2 * alone / both, allreduce_bound=2 * both / (both + allreduce),
                    **costs)
        step, main_cpu, other_cpu = (costs[k] for k in ("distributed_step_ms", "distributed_step_cpu_ms_main_thread",
                                                        "distributed_step_cpu_ms_other_threads"))
        results.add("Horovod step: CPU of the rank's other threads per step", other_cpu, "ms",
                    note=f"a step of DistributedOptimizer takes {step:.1f} ms with both ranks training; per step the "
                         f"main thread spends {main_cpu:.1f} ms of CPU and the other threads (Horovod's background "
                         f"thread, Gloo) {other_cpu:.1f} ms, which on 2 busy cores come out of the other rank's compute",
                    horovod_step_bound=2 * alone / step,
                    sleeping_wait_step_bound=2 * alone / costs["sleeping_wait_step_ms"])
        if RETRIES:
            results.extra["retried_fits"] = RETRIES
    finally:
        files.close()
        spark.stop()
    return results.finish(args.out)


if __name__ == "__main__":
    main()
