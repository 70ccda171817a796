"""The training loop every backend runs: one function, the same on every rank.

Data, forward, loss, backward, step, log. The distributed parts are the few
calls on ``comm`` (see ``sparkneural.training.collective``): the loop knows
nothing of Horovod or torch.distributed.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
import pyarrow.fs as pafs
import torch
import torch.nn as nn

from sparkneural import devices
from sparkneural.data.filesystems import open_filesystem
from sparkneural.data.shards import epoch_rows, open_shard
from sparkneural.spark_internals import executor_identity
from sparkneural.training.reports import Reporter
from sparkneural.training.spec import TrainSpec
from sparkneural.training.tasks import get_task
from sparkneural.training.transfer import is_frozen

CHECKPOINT_FILE = "checkpoint.pt"
# torch draws initial weights, dropout masks and noise from one process-wide generator.
# Fits that share a process (the local backend, or the driver's checks while another
# fit trains there) take this lock around those draws, so each fit sees only its own seeds.
GLOBAL_RNG_LOCK = threading.RLock()
# name -> optimizer over params (tensors, or param groups; a group's own "lr" wins); the ``optimizer`` Param's options.
OPTIMIZERS = {
    "adam": lambda params, spec: torch.optim.Adam(params, lr=spec.learningRate, betas=(0.9, 0.999), eps=1e-8, weight_decay=spec.weightDecay),
    "adamw": lambda params, spec: torch.optim.AdamW(params, lr=spec.learningRate, weight_decay=spec.weightDecay),
    "sgd": lambda params, spec: torch.optim.SGD(params, lr=spec.learningRate, momentum=spec.momentum, weight_decay=spec.weightDecay),
    "rmsprop": lambda params, spec: torch.optim.RMSprop(params, lr=spec.learningRate, weight_decay=spec.weightDecay),
    "adadelta": lambda params, spec: torch.optim.Adadelta(params, lr=spec.learningRate, weight_decay=spec.weightDecay),
}


@dataclass
class TrainResult:
    weights: dict[str, np.ndarray] | None  # rank 0 only
    history: list[dict[str, float]]
    bestEpoch: int | None
    rank: int
    rankDigests: list[str]  # a fingerprint of the final weights of each rank
    rankEpochs: list[int]  # the last epoch each rank completed
    epochsRun: list[int]  # the epochs trained by this call (a resumed run skips the others)
    rankDevices: list[dict[str, Any]]  # each rank's rank, host, device and Spark GPU address

    @property
    def ranksAgree(self) -> bool:
        """Whether every rank ended with bit-identical weights."""
        return len(set(self.rankDigests)) == 1


def build_network(spec: TrainSpec) -> nn.Module:
    """The torch module a spec describes (from the registry or a user's factory)."""
    if isinstance(spec.architecture, bytes):
        factory = cloudpickle.loads(spec.architecture)
        accepted = inspect.signature(factory).parameters
        kwargs = {k: v for k, v in (("inputShape", list(spec.inputShape)), ("outputSize", spec.outputSize)) if k in accepted}
        return factory(**kwargs, **spec.architectureParams)
    from sparkneural.nn import build

    return build(spec.architecture, inputShape=list(spec.inputShape), outputSize=spec.outputSize, **spec.architectureParams)


def make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    """The optimizer named by ``spec.optimizer``, with ``spec.learningRate`` and its other settings."""
    return OPTIMIZERS[spec.optimizer](params, spec)


def _rank_digests(model: nn.Module, comm) -> list[str]:
    """Every rank's weight fingerprint (48 bits of a sha256, exact in float64), gathered by a sum."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    slots = np.zeros(comm.size)
    slots[comm.rank] = int(h.hexdigest()[:12], 16)
    return [f"{int(v):012x}" for v in comm.allreduce_sum(slots)]


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    # Seeding per epoch makes a resumed run draw what the uninterrupted run drew.
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**31)


def _save_checkpoint(directory: str, state: dict[str, Any]) -> None:
    """Write ``state`` as ``directory``/checkpoint.pt on any file system; never a half-written one there."""
    fs, path = open_filesystem(directory)
    fs.create_dir(path, recursive=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    target = f"{path.rstrip('/')}/{CHECKPOINT_FILE}"
    partial = f"{target}.tmp-{os.getpid()}"
    with fs.open_output_stream(partial) as f:
        f.write(buffer.getbuffer())
    fs.move(partial, target)


def load_checkpoint(checkpoint_dir: str) -> dict[str, Any] | None:
    fs, path = open_filesystem(checkpoint_dir)
    target = f"{path.rstrip('/')}/{CHECKPOINT_FILE}"
    if fs.get_file_info(target).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(target) as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)


def train(spec: TrainSpec, comm, reporter: Reporter | None = None) -> TrainResult:
    """Train on this rank's shard; every rank returns, rank 0 with the weights.

    Rank 0 reports its epochs, progress and checkpoints to ``reporter`` (by
    default it prints them: the local backend runs on the driver). As each
    epoch begins, every rank calls ``spec.epochHooks``.
    """
    reporter = reporter or Reporter(None, comm.rank)
    rank = RankTraining(spec, comm)
    stopping = EarlyStopping(spec.earlyStoppingPatience, spec.earlyStoppingMetric, rank.task.maximizes(spec.earlyStoppingMetric))
    start_epoch, history = _resume(rank, stopping)
    rank.share()
    hooks = [cloudpickle.loads(hook) for hook in spec.epochHooks]
    epochs_run: list[int] = []

    for epoch in range(start_epoch, spec.epochs):
        began = time.perf_counter()
        rank.freeze_for(epoch)
        for hook in hooks:
            hook(spec, comm.rank, epoch + 1)
        record = rank.train_epoch(epoch, reporter, first=epoch == start_epoch)
        record["seconds"] = time.perf_counter() - began
        history.append(record)
        epochs_run.append(epoch + 1)
        stop = rank.validating and stopping.update(record, rank.model)
        if comm.rank == 0:
            _end_epoch(rank, reporter, history, stopping.best)
        if stop:
            break

    if rank.validating:
        stopping.restore_best(rank.model)
    return rank.result(history, stopping.best["epoch"], epochs_run)


def _place(spec: TrainSpec, comm) -> tuple[torch.device, list[str] | None]:
    """This rank's torch threads and device, handed to ``comm``; and the GPU addresses Spark assigned to its task."""
    threads = spec.threads or max(1, (os.cpu_count() or 1) // max(1, comm.local_size))
    torch.set_num_threads(threads)
    gpus = devices.spark_gpu_addresses()
    device = devices.resolve(spec.device, comm.local_rank, gpus)
    if device.type == "cuda" and (error := comm.gpu_error()):
        if spec.device == "cuda":
            raise RuntimeError(error)
        device = torch.device("cpu")  # device="auto": a GPU this runtime cannot reduce on is no use
    devices.check_precision(spec.precision, device)
    comm.use_device(device)
    return device, gpus


class RankTraining:
    """One rank's device, data shard, network and optimizer; it trains one epoch at a time."""

    def __init__(self, spec: TrainSpec, comm) -> None:
        self.spec, self.comm = spec, comm
        self.device, self.gpus = _place(spec, comm)
        self.task = get_task(spec.task)
        self.shard = open_shard(spec.data, comm.rank, comm.size, self.task, spec.inputShape, spec.shuffleBufferRows, spec.dataLoader,
                                self.device)
        # Every rank runs the same number of steps: shards shorter than the longest
        # wrap around to its length, so no rank waits alone in an allreduce.
        self.rows_per_epoch, self.validating = epoch_rows(spec.data, comm.size), spec.data.validation_rows > 0
        if self.rows_per_epoch == 0:
            raise ValueError("no training rows left after the validation split")
        self.steps = math.ceil(self.rows_per_epoch / spec.batchSize)
        torch.manual_seed(spec.seed)
        self.model = build_network(spec)
        if spec.initWeights:
            self.model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in spec.initWeights.items()}, strict=False)
        self.model.to(self.device)
        self.scaler = devices.grad_scaler(spec.precision, self.device)
        self.frozen = {name for name, _ in self.model.named_parameters() if is_frozen(name, spec.freeze)}
        self.optimizer = make_optimizer(spec, _param_groups(spec, self.model, self.frozen))
        self.network, self.frozen_now = self.model, False

    def share(self) -> None:
        """Give every rank rank 0's weights and optimizer state, and wrap both for the collective."""
        self.comm.broadcast_state(self.model, self.optimizer)
        self.network, self.optimizer = self.comm.wrap(self.model, self.optimizer)

    def freeze_for(self, epoch: int) -> None:
        """Fix or release the ``freeze`` parameters as ``epoch`` (0-based) needs them."""
        if self.frozen and self.frozen_now != _frozen_at(self.spec, epoch):
            self.frozen_now = _frozen_at(self.spec, epoch)
            self.network = self.comm.set_trainable(self.model, self.network, {n for n in self.frozen if self.frozen_now})

    def train_epoch(self, epoch: int, reporter: Reporter, first: bool) -> dict[str, float]:
        """Train ``epoch`` (0-based); its record: the epoch's number and its metrics, summed over every rank."""
        spec, comm, task, model = self.spec, self.comm, self.task, self.model
        seed = _epoch_seed(spec.seed, epoch, comm.rank)
        torch.manual_seed(seed)
        self.network.train()
        sums = EpochSums()
        bar = ProgressBar(epoch + 1, spec.epochs, self.steps, reporter) if spec.progressBar and spec.verbose and comm.rank == 0 else None
        for step, (xb, yb) in enumerate(self.shard.batches(seed, self.rows_per_epoch, spec.batchSize)):
            if step == 0 and first and comm.rank == 0:
                reporter.first_step(epoch + 1)
            with devices.autocast(spec.precision, self.device):
                output, yb = task.scored(model, self.network(xb), xb, yb)
            # in float32, outside autocast, which refuses some losses (binary cross entropy) on a GPU
            loss = task.loss(spec.lossFunction, output.float(), yb, model, spec.classWeights)
            self.optimizer.zero_grad()
            comm.backward(self.scaler.scale(loss))
            comm.step(self.optimizer, model, spec.gradientClipNorm, self.scaler)
            sums.add(loss.detach(), len(output), task.metric_sum(model, output.detach(), yb))
            if bar is not None:
                bar.update(step + 1, sums)
        comm.average_buffers(model)
        record = {"epoch": epoch + 1, **task.metrics(comm.allreduce_sum(sums.total()), "")}
        if self.validating:
            record.update(task.metrics(comm.allreduce_sum(evaluate(spec, model, self.shard.validation(), self.device)), "val_"))
        return record

    def result(self, history: list[dict[str, float]], best_epoch: int | None, epochs_run: list[int]) -> TrainResult:
        """What this rank returns; rank 0's holds the weights."""
        comm, model = self.comm, self.model
        weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()} if comm.rank == 0 else None
        slots = np.zeros(comm.size)
        slots[comm.rank] = history[-1]["epoch"] if history else 0
        rank_epochs = [int(e) for e in comm.allreduce_sum(slots)]
        rank_devices = comm.gather(devices.describe(comm.rank, self.device, self.gpus, executor_identity()[1]))
        return TrainResult(weights, history, best_epoch, comm.rank, _rank_digests(model, comm), rank_epochs, epochs_run, rank_devices)


class EarlyStopping:
    """The best epoch so far by ``metric`` and whether ``patience`` epochs without improvement have passed.

    ``best`` is kept in checkpoints as it is: its epoch, metric, weights and the epochs since.
    """

    def __init__(self, patience: int | None, metric: str, maximize: bool) -> None:
        self.patience, self.metric, self.maximize = patience, metric, maximize
        self.best: dict[str, Any] = {"epoch": None, "metric": None, "state": None, "bad_epochs": 0}

    def update(self, record: dict[str, float], model: nn.Module) -> bool:
        """Take in an epoch's ``record``, keeping ``model``'s weights if it is the best; whether to stop now."""
        metric, best = record[self.metric], self.best
        if best["metric"] is None or (metric > best["metric"] if self.maximize else metric < best["metric"]):
            self.best = {"epoch": record["epoch"], "metric": metric, "state": copy.deepcopy(model.state_dict()), "bad_epochs": 0}
            return False
        best["bad_epochs"] += 1
        return self.patience is not None and best["bad_epochs"] >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        """With a patience, put the best epoch's weights back into ``model``."""
        if self.best["state"] is not None and self.patience is not None:
            model.load_state_dict(self.best["state"])


def _resume(rank: RankTraining, stopping: EarlyStopping) -> tuple[int, list[dict[str, float]]]:
    """With ``resume``, load this fit's last checkpoint into ``rank`` and ``stopping``: the epochs done and their history."""
    spec, comm = rank.spec, rank.comm
    checkpoint = load_checkpoint(spec.checkpointDir) if (spec.resume and spec.checkpointDir) else None
    if checkpoint is not None and spec.resumeRun is not None and checkpoint.get("run") != spec.resumeRun:
        checkpoint = None  # written by an earlier fit, before this one wrote its first
    start_epoch, history = 0, []
    if checkpoint is not None:
        rank.model.load_state_dict(checkpoint["model"])
        rank.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):  # a disabled scaler (precision 32 or bf16-mixed) saved nothing
            rank.scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, history = int(checkpoint["epoch"]), list(checkpoint["history"])
        stopping.best = dict(checkpoint["best"])
    if spec.resume:  # every rank read the checkpoint itself: they must have read the same one
        starts = np.zeros(comm.size)
        starts[comm.rank] = start_epoch
        starts = comm.allreduce_sum(starts)
        if len(set(starts.tolist())) > 1:
            raise RuntimeError(f"checkpointDir: the ranks resumed from different checkpoints (after epochs {starts.astype(int).tolist()}); "
                               "it must be one directory that every rank reads")
    return start_epoch, history


def _end_epoch(rank: RankTraining, reporter: Reporter, history: list[dict[str, float]], best: dict[str, Any]) -> None:
    """Rank 0's end of an epoch: its record to the driver (printed when verbose), then its checkpoint."""
    spec, record = rank.spec, history[-1]
    reporter.epoch(record, spec.epochs, show=bool(spec.verbose))
    if spec.checkpointDir:
        _save_checkpoint(
            spec.checkpointDir,
            {"epoch": record["epoch"], "model": rank.model.state_dict(), "optimizer": rank.optimizer.state_dict(), "history": history,
             "best": best, "run": spec.runId, "scaler": rank.scaler.state_dict()},
        )
        reporter.checkpoint(record["epoch"])


@torch.no_grad()
def evaluate(spec: TrainSpec, model: nn.Module, chunks, device: torch.device | None = None) -> np.ndarray:
    """The task's metric sums over the validation ``chunks`` of (inputs, targets), computed on ``device``."""
    model.eval()
    task = get_task(spec.task)
    device = device or torch.device("cpu")
    sums = EpochSums()
    for inputs, targets in chunks:
        inputs, targets = devices.to_device(inputs, device), devices.to_device(targets, device)
        with devices.autocast(spec.precision, device):
            output, target = task.scored(model, model(inputs), inputs, targets)
        loss = task.loss(spec.lossFunction, output.float(), target, model, spec.classWeights)
        sums.add(loss, len(output), task.metric_sum(model, output, target))
    return sums.total()


class EpochSums:
    """[loss * n, n, metric sum] over an epoch's batches.

    The per-batch tensors are collected and folded into a running sum every
    ``FOLD`` batches, where they are: a GPU runs a few kernels per ``FOLD``
    steps instead of several per step, and waits for the host only when the
    sums are read.
    """

    FOLD = 256

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, int, torch.Tensor]] = []
        self.folded: torch.Tensor | None = None
        self.count = 0

    def add(self, loss: torch.Tensor, n: int, metric: torch.Tensor) -> None:
        self.parts.append((loss, n, metric))
        self.count += n
        if len(self.parts) >= self.FOLD:
            self.folded = self._sum()
            self.parts = []

    def _sum(self) -> torch.Tensor | None:
        """[loss * n, metric] summed over the batches so far, as float64 where they were computed."""
        if not self.parts:
            return self.folded
        losses = torch.stack([loss for loss, _, _ in self.parts]).double()
        counts = torch.tensor([n for _, n, _ in self.parts], dtype=torch.float64).to(losses.device, non_blocking=True)
        part = torch.stack([losses @ counts, torch.stack([m for _, _, m in self.parts]).double().sum()])
        return part if self.folded is None else self.folded + part

    def total(self) -> np.ndarray:
        summed = self._sum()
        if summed is None:
            return np.zeros(3)
        loss_sum, metric_sum = summed.tolist()
        return np.array([loss_sum, float(self.count), metric_sum])


def _param_groups(spec: TrainSpec, model: nn.Module, frozen: set[str]) -> list[dict[str, Any]]:
    """One optimizer group for the parameters trained from the start, one for the frozen ones.

    Frozen parameters are in the optimizer from the start (Horovod hooks
    every parameter when the optimizer is wrapped) but get no gradient, so
    the optimizer leaves them bit-identical until they are unfrozen.
    """
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if n not in frozen]}]
    if frozen:
        groups.append({"params": [p for n, p in named if n in frozen], "lr": spec.unfrozenLearningRate or spec.learningRate})
    return [g for g in groups if g["params"]]


def _frozen_at(spec: TrainSpec, epoch: int) -> bool:
    """Whether the ``freeze`` parameters are fixed during ``epoch`` (0-based)."""
    return spec.unfreezeAfterEpochs is None or epoch < spec.unfreezeAfterEpochs


class ProgressBar:
    """A one-line bar of the steps of an epoch with the running loss, redrawn at most 5 times a second."""

    def __init__(self, epoch: int, epochs: int, steps: int, reporter: Reporter, width: int = 30):
        self.prefix, self.steps, self.width, self.drawn = f"epoch {epoch}/{epochs}", steps, width, 0.0
        self.reporter = reporter

    def update(self, step: int, sums: EpochSums) -> None:
        now = time.perf_counter()
        if now - self.drawn < 0.2 and step < self.steps:
            return
        self.drawn = now
        filled = self.width * step // self.steps
        loss_sum, n, _ = sums.total()
        loss = loss_sum / max(n, 1.0)
        self.reporter.progress(f"{self.prefix} [{'=' * filled}{' ' * (self.width - filled)}] {step}/{self.steps}  loss {loss:.4f}")
