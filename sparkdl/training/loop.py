"""The training loop every backend runs: one function, the same on every rank.

Data, forward, loss, backward, step, log. The distributed parts are the few
calls on ``comm`` (see ``sparkdl.training.collective``): the loop knows
nothing of Horovod or torch.distributed.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparkdl.data.materialize import FEATURES, IS_VALIDATION, LABEL, read_shard
from sparkdl.training.spec import TrainSpec
from sparkdl.training.transfer import is_frozen

CHECKPOINT_FILE = "checkpoint.pt"
LOSSES = {
    "cross_entropy": "classification",
    "mse": "regression",
    "l1": "regression",
    "huber": "regression",
    "bce": "reconstruction",
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

    @property
    def ranksAgree(self) -> bool:
        """Whether every rank ended with bit-identical weights."""
        return len(set(self.rankDigests)) == 1


def build_network(spec: TrainSpec) -> nn.Module:
    """The torch module a spec describes (from the registry or a user's factory)."""
    if isinstance(spec.architecture, bytes):
        import cloudpickle

        factory = cloudpickle.loads(spec.architecture)
        accepted = inspect.signature(factory).parameters
        kwargs = {k: v for k, v in (("inputShape", list(spec.inputShape)), ("outputSize", spec.outputSize)) if k in accepted}
        return factory(**kwargs, **spec.architectureParams)
    from sparkdl.nn import build

    return build(spec.architecture, inputShape=list(spec.inputShape), outputSize=spec.outputSize, **spec.architectureParams)


def make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    """The optimizer over ``params`` (tensors, or param groups; a group's own "lr" wins)."""
    lr, wd = spec.learningRate, spec.weightDecay
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=wd)
    if spec.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    if spec.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=wd)
    raise ValueError(f"optimizer: unknown name {spec.optimizer!r}")


def compute_loss(spec: TrainSpec, output: torch.Tensor, target: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """The task loss, plus the module's own penalty (``extra_loss``: a VAE's KL term, a sparsity term)."""
    if spec.task == "seq2seq":  # the module's cross entropy over real target tokens, padding ignored
        loss = model.loss(output, target)
    else:
        loss = _task_loss(spec, output, target)
    if model is not None and hasattr(model, "extra_loss"):
        loss = loss + model.extra_loss()
    return loss


def _task_loss(spec: TrainSpec, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    name = spec.lossFunction
    if name == "cross_entropy":
        weight = torch.tensor(spec.classWeights, dtype=output.dtype) if spec.classWeights else None
        if output.dim() == 3:  # one class distribution per time step: (batch, steps, classes)
            return F.cross_entropy(output.transpose(1, 2), target.reshape(output.shape[:2]), weight=weight)
        return F.cross_entropy(output, target, weight=weight)
    target = target.reshape(output.shape)
    if name == "mse":
        return F.mse_loss(output, target)
    if name == "l1":
        return F.l1_loss(output, target)
    if name == "huber":
        return F.huber_loss(output, target)
    if name == "bce":  # the output is a probability (a sigmoid output layer)
        return F.binary_cross_entropy(output.clamp(1e-7, 1 - 1e-7), target)
    raise ValueError(f"lossFunction: unknown name {name!r}")


def _batch_stats(spec: TrainSpec, output: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, model: nn.Module | None = None) -> np.ndarray:
    """Sums that add up across batches and ranks: [loss*n, n, correct | squared error]."""
    n = float(output.shape[0])
    if spec.task == "seq2seq":  # exact sequences: every real target token right under teacher forcing
        right = (output.argmax(dim=-1) == target) | (target == model.padId)
        extra = float(right.all(dim=1).sum())
    elif spec.task in ("classification", "next_step"):  # per-step outputs count the fraction of steps right
        hits = (output.argmax(dim=-1) == target.reshape(output.shape[:-1])).float()
        extra = float(hits.reshape(len(hits), -1).mean(dim=1).sum())
    else:  # squared error, averaged over the outputs of each row
        error = (output - target.reshape(output.shape)) ** 2
        extra = float(error.reshape(len(error), -1).mean(dim=1).sum())
    return np.array([float(loss) * n, n, extra])


def _metrics(spec: TrainSpec, sums: np.ndarray, prefix: str) -> dict[str, float]:
    loss_sum, n, extra = (float(v) for v in sums)  # plain floats: checkpoints load with weights_only
    metrics = {f"{prefix}loss": loss_sum / n}
    if spec.task in ("classification", "next_step", "seq2seq"):
        metrics[f"{prefix}accuracy"] = extra / n
    else:
        metrics[f"{prefix}rmse"] = math.sqrt(extra / n)
    return metrics


def _next_step(model: nn.Module, output: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher forcing: the output at step t is scored against the input class at t + 1."""
    classes = model.split_input(inputs)[0] if hasattr(model, "split_input") else inputs.reshape(len(inputs), -1).long()
    return output[:, :-1], classes[:, 1:]


def _scored(spec: TrainSpec, model: nn.Module, output: torch.Tensor, inputs: torch.Tensor, target: torch.Tensor):
    """The (output, target) pair the loss and the metrics compare."""
    if spec.task == "next_step":
        return _next_step(model, output, inputs)
    if spec.task == "seq2seq":  # inputs hold [source; target] (see sparkdl.nn.seq2seq)
        return output, model.split(inputs)[1].round().long()
    return output, target


def _targets(spec: TrainSpec, shard: dict[str, np.ndarray]) -> np.ndarray:
    if spec.task in ("reconstruction", "next_step", "seq2seq"):
        return shard[FEATURES]
    if spec.task == "classification":
        return shard[LABEL].astype(np.int64)
    return shard[LABEL].astype(np.float32)


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


def _save_checkpoint(path: str, state: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint at ``path``


def load_checkpoint(checkpoint_dir: str) -> dict[str, Any] | None:
    path = os.path.join(checkpoint_dir, CHECKPOINT_FILE)
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def train(spec: TrainSpec, comm) -> TrainResult:
    """Train on this rank's shard; every rank returns, rank 0 with the weights."""
    threads = spec.threads or max(1, (os.cpu_count() or 1) // max(1, comm.local_size))
    torch.set_num_threads(threads)
    shard = read_shard(spec.data, comm.rank, comm.size)
    features = shard[FEATURES].reshape(-1, *spec.inputShape).astype(np.float32, copy=False)
    targets = _targets(spec, shard)
    is_val = shard[IS_VALIDATION].astype(bool) if spec.data.has_validation else np.zeros(len(features), bool)
    x_train, y_train = torch.from_numpy(features[~is_val]), torch.from_numpy(targets[~is_val])
    x_val, y_val = torch.from_numpy(features[is_val]), torch.from_numpy(targets[is_val])
    # Every rank runs the same number of steps: shards shorter than the longest
    # wrap around to its length, so no rank waits alone in an allreduce.
    local_counts = np.zeros(comm.size + 1)
    local_counts[comm.rank], local_counts[-1] = len(x_train), len(x_val)
    counts = comm.allreduce_sum(local_counts)
    epoch_rows, validating = int(counts[: comm.size].max()), counts[comm.size] > 0
    if epoch_rows == 0:
        raise ValueError("no training rows left after the validation split")
    steps = math.ceil(epoch_rows / spec.batchSize)

    torch.manual_seed(spec.seed)
    model = build_network(spec)
    if spec.initWeights:
        model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in spec.initWeights.items()}, strict=False)
    frozen = {name for name, _ in model.named_parameters() if is_frozen(name, spec.freeze)}
    optimizer = make_optimizer(spec, _param_groups(spec, model, frozen))
    history: list[dict[str, float]] = []
    start_epoch, best = 0, {"epoch": None, "metric": None, "state": None, "bad_epochs": 0}
    checkpoint = load_checkpoint(spec.checkpointDir) if (spec.resume and spec.checkpointDir) else None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch, history = int(checkpoint["epoch"]), list(checkpoint["history"])
        best = dict(checkpoint["best"])
    comm.broadcast_state(model, optimizer)
    network, optimizer = comm.wrap(model, optimizer)
    maximize = "accuracy" in spec.earlyStoppingMetric
    epochs_run: list[int] = []
    frozen_now = False

    for epoch in range(start_epoch, spec.epochs):
        began = time.perf_counter()
        if frozen and frozen_now != _frozen_at(spec, epoch):
            frozen_now = _frozen_at(spec, epoch)
            network = comm.set_trainable(model, network, {n for n in frozen if frozen_now})
        if spec.testHooks.get("fail_at_epoch") == epoch + 1 and comm.rank == spec.testHooks.get("fail_rank", comm.rank):
            raise RuntimeError(f"injected failure at epoch {epoch + 1} on rank {comm.rank}")
        torch.manual_seed(_epoch_seed(spec.seed, epoch, comm.rank))
        order = torch.randperm(len(x_train)).repeat(math.ceil(epoch_rows / max(1, len(x_train))))[:epoch_rows]
        network.train()
        sums = np.zeros(3)
        bar = ProgressBar(epoch + 1, spec.epochs, steps) if spec.progressBar and spec.verbose and comm.rank == 0 else None
        for step in range(steps):
            index = order[step * spec.batchSize : (step + 1) * spec.batchSize]
            xb, yb = x_train[index], y_train[index]
            output, yb = _scored(spec, model, network(xb), xb, yb)
            loss = compute_loss(spec, output, yb, model)
            optimizer.zero_grad()
            loss.backward()
            comm.step(optimizer, model, spec.gradientClipNorm)
            sums += _batch_stats(spec, output.detach(), yb, loss.detach(), model)
            if bar is not None:
                bar.update(step + 1, sums)
        comm.average_buffers(model)
        record = {"epoch": epoch + 1, **_metrics(spec, comm.allreduce_sum(sums), "")}
        if validating:
            record.update(_metrics(spec, comm.allreduce_sum(evaluate(spec, model, x_val, y_val)), "val_"))
        record["seconds"] = time.perf_counter() - began
        history.append(record)
        epochs_run.append(epoch + 1)
        stop = False
        if validating:
            metric = record[spec.earlyStoppingMetric]
            improved = best["metric"] is None or (metric > best["metric"] if maximize else metric < best["metric"])
            if improved:
                best = {"epoch": epoch + 1, "metric": metric, "state": copy.deepcopy(model.state_dict()), "bad_epochs": 0}
            else:
                best["bad_epochs"] += 1
                stop = spec.earlyStoppingPatience is not None and best["bad_epochs"] >= spec.earlyStoppingPatience
        if comm.rank == 0:
            if spec.verbose:
                print(("\r\x1b[K" if bar is not None else "") + _format_epoch(record, spec.epochs), flush=True)
            if spec.checkpointDir:
                _save_checkpoint(
                    os.path.join(spec.checkpointDir, CHECKPOINT_FILE),
                    {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history, "best": best},
                )
        if stop:
            break

    if validating and best["state"] is not None and spec.earlyStoppingPatience is not None:
        model.load_state_dict(best["state"])
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()} if comm.rank == 0 else None
    slots = np.zeros(comm.size)
    slots[comm.rank] = history[-1]["epoch"] if history else 0
    rank_epochs = [int(e) for e in comm.allreduce_sum(slots)]
    return TrainResult(weights, history, best["epoch"], comm.rank, _rank_digests(model, comm), rank_epochs, epochs_run)


@torch.no_grad()
def evaluate(spec: TrainSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    model.eval()
    sums = np.zeros(3)
    for start in range(0, len(x), 4096):
        inputs = x[start : start + 4096]
        output, target = _scored(spec, model, model(inputs), inputs, y[start : start + 4096])
        sums += _batch_stats(spec, output, target, compute_loss(spec, output, target, model), model)
    return sums


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

    def __init__(self, epoch: int, epochs: int, steps: int, width: int = 30):
        self.prefix, self.steps, self.width, self.drawn = f"epoch {epoch}/{epochs}", steps, width, 0.0

    def update(self, step: int, sums: np.ndarray) -> None:
        now = time.perf_counter()
        if now - self.drawn < 0.2 and step < self.steps:
            return
        self.drawn = now
        filled = self.width * step // self.steps
        loss = sums[0] / max(sums[1], 1.0)
        print(f"\r{self.prefix} [{'=' * filled}{' ' * (self.width - filled)}] {step}/{self.steps}  loss {loss:.4f}", end="", flush=True)


def _format_epoch(record: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(record['epoch'])}/{epochs}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds")]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)
