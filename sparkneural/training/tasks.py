"""What a model learns to do: one object per task.

A task supplies what the generic parts need to know: the loss and its
default, the metrics summed over batches and ranks, the targets read from a
shard, the (output, target) pair that is scored, the columns a fitted model
writes, and the early-stopping metrics it offers. The training loop and the
models call these methods; nothing outside this module asks which task it is.

>>> task = get_task("classification")
>>> task.default_loss, task.metric, task.early_stopping_metrics
('cross_entropy', 'accuracy', ('val_loss', 'val_accuracy'))
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _cross_entropy(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if output.dim() == 3:  # one class distribution per time step: (batch, steps, classes)
        return F.cross_entropy(output.transpose(1, 2), target.reshape(output.shape[:2]), weight=weight)
    return F.cross_entropy(output, target, weight=weight)


@functools.lru_cache(maxsize=16)
def _thresholds(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` as a tensor on ``device``, made once: a copy to a GPU per chunk would wait for the GPU each time."""
    return torch.tensor(values, dtype=dtype, device=device)


def _shaped(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    return lambda output, target, weight: loss(output, target.reshape(output.shape))


# name -> loss(output, target, class weights or None); the ``lossFunction`` Param's options.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "cross_entropy": _cross_entropy,
    "mse": _shaped(F.mse_loss),
    "l1": _shaped(F.l1_loss),
    "huber": _shaped(F.huber_loss),
    # the output is a probability (a sigmoid output layer)
    "bce": _shaped(lambda output, target: F.binary_cross_entropy(output.clamp(1e-7, 1 - 1e-7), target)),
}


class Task:
    """The defaults are those of a regression; subclasses change what differs."""

    name = "regression"
    default_loss = "mse"
    metric = "rmse"  # "accuracy" is maximised, anything else minimised
    has_label = True
    label_may_be_array = True
    integral_label = False
    is_classifier = False  # MLlib's classifier contract: numClasses, thresholds, rawPrediction

    @property
    def early_stopping_metrics(self) -> tuple[str, str]:
        return ("val_loss", f"val_{self.metric}")

    def maximizes(self, metric: str) -> bool:
        return metric.endswith("accuracy")

    # -- training (on the ranks) ------------------------------------------------------
    def targets(self, features: np.ndarray, label: np.ndarray | None) -> np.ndarray:
        return label.astype(np.float32)

    def scored(self, model: nn.Module, output: torch.Tensor, inputs: torch.Tensor, target: torch.Tensor):
        """The (output, target) pair that the loss and the metrics compare."""
        return output, target

    def loss(self, name: str, output: torch.Tensor, target: torch.Tensor, model: nn.Module,
             class_weights: tuple[float, ...] | None = None) -> torch.Tensor:
        """The loss ``name``, plus the module's own penalty (``extra_loss``: a VAE's KL term, a sparsity term)."""
        weight = torch.tensor(class_weights, dtype=torch.float32, device=output.device) if class_weights else None
        loss = LOSSES[name](output, target, weight)
        if hasattr(model, "extra_loss"):
            loss = loss + model.extra_loss()
        return loss

    def metric_sum(self, model: nn.Module, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The metric summed over the rows of a batch, as a tensor where the output is (read once per epoch)."""
        error = (output.float() - target.reshape(output.shape)) ** 2  # averaged over the outputs of each row
        return error.reshape(len(error), -1).mean(dim=1).sum()

    def metrics(self, sums: np.ndarray, prefix: str) -> dict[str, float]:
        """The epoch's metrics from the summed [loss * n, n, metric sum] of every batch and rank."""
        loss_sum, n, metric_sum = (float(v) for v in sums)  # plain floats: checkpoints load with weights_only
        value = metric_sum / n
        return {f"{prefix}loss": loss_sum / n, f"{prefix}{self.metric}": value if self.metric == "accuracy" else math.sqrt(value)}

    # -- scoring (in transform) --------------------------------------------------------
    def outputs(self, net: nn.Module, x: torch.Tensor, thresholds: list[float] | None = None) -> dict[str, torch.Tensor]:
        """Named outputs of ``net`` for one chunk of shaped inputs (under inference mode), where ``x`` is;
        ``sparkneural.estimators.scoring.launch`` brings them to the host."""
        flat = net(x).reshape(len(x), -1)
        return {"prediction": flat[:, 0] if flat.shape[1] == 1 else flat}

    def output_columns(self, model) -> list[tuple[str, str, Any, Any]]:
        """(output name, column name, Arrow encoder, Spark type) of each column ``model`` adds."""
        from pyspark.sql import types as T

        from sparkneural.data import arrow

        if model.architectureSpec["outputSize"] == 1:
            return [("prediction", model.getPredictionCol(), arrow.doubles, T.DoubleType())]
        return [("prediction", model.getPredictionCol(), arrow.float_lists, T.ArrayType(T.FloatType()))]


class Regression(Task):
    """A number per row, or an array of numbers (several outputs)."""


class Classification(Task):
    """Class indices 0..k-1; writes MLlib's ``rawPrediction``, ``probability`` and ``prediction``."""

    name, default_loss, metric = "classification", "cross_entropy", "accuracy"
    label_may_be_array, integral_label, is_classifier = False, True, True

    def targets(self, features, label):
        return label.astype(np.int64)

    def metric_sum(self, model, output, target):
        hits = output.argmax(dim=-1) == target.reshape(output.shape[:-1])
        if hits.dim() == 1:
            return hits.sum()
        return hits.float().reshape(len(hits), -1).mean(dim=1).sum()  # per-step outputs count the fraction of steps right

    def outputs(self, net, x, thresholds=None):
        logits = net(x).double()  # MLlib's vectors hold doubles
        probability = torch.softmax(logits, dim=1)
        # Centred logits keep the softmax and rank like the probabilities, as MLlib's
        # evaluators expect of rawPrediction (a binary model gets the margins [-m, m]).
        raw = logits - logits.mean(dim=1, keepdim=True)
        if thresholds is None:
            prediction = logits.argmax(dim=1)
        else:  # MLlib's meaning: the largest p / t wins, and a class with t = 0 always wins
            t = _thresholds(tuple(thresholds), probability.dtype, probability.device)
            prediction = torch.where(t == 0, torch.inf, probability / t).argmax(dim=1)
        return {"raw": raw, "probability": probability, "prediction": prediction.double()}

    def output_columns(self, model):
        from pyspark.ml.linalg import VectorUDT
        from pyspark.sql import types as T

        from sparkneural.data import arrow

        columns = [
            ("raw", model.getRawPredictionCol(), arrow.dense_vectors, VectorUDT()),
            ("probability", model.getProbabilityCol(), arrow.dense_vectors, VectorUDT()),
            ("prediction", model.getPredictionCol(), arrow.doubles, T.DoubleType()),
        ]
        return [c for c in columns if c[1]]


class Reconstruction(Task):
    """No label: the input is the target. Writes ``reconstruction``, its error and the code."""

    name, has_label = "reconstruction", False

    def __init__(self, default_loss: str = "mse") -> None:
        self.default_loss = default_loss  # "bce" for a sigmoid output layer

    def targets(self, features, label):
        return features

    def outputs(self, net, x, thresholds=None):
        flat = net(x).reshape(len(x), -1)
        error = ((flat - x.reshape(len(x), -1)) ** 2).mean(dim=1)
        outputs = {"reconstruction": flat, "reconstructionError": error}
        if hasattr(net, "encode"):
            outputs["embedding"] = net.encode(x).reshape(len(x), -1)
        return outputs


class NextStep(Classification):
    """Teacher forcing on windows of classes (audio): the output at step t is scored against class t + 1."""

    name, has_label, is_classifier = "next_step", False, False

    def targets(self, features, label):
        return features

    def scored(self, model, output, inputs, target):
        classes = model.split_input(inputs)[0] if hasattr(model, "split_input") else inputs.reshape(len(inputs), -1).long()
        return output[:, :-1], classes[:, 1:]

    def outputs(self, net, x, thresholds=None):
        out = net(x)  # (rows, T, classes); out[:, t] predicts class t + 1
        log_p = torch.log_softmax(out, dim=-1)
        classes = net.split_input(x)[0]
        scored = log_p[:, :-1].gather(2, classes[:, 1:].unsqueeze(-1)).squeeze(-1)
        return {"prediction": out[:, -1].argmax(dim=-1).double(), "logLikelihood": scored.sum(dim=1).double()}


class SequenceToSequence(Classification):
    """Token ids in, token ids out; each row is packed as [source; target] (see ``sparkneural.nn.seq2seq``)."""

    name, has_label, is_classifier = "seq2seq", True, False

    def targets(self, features, label):
        return features

    def scored(self, model, output, inputs, target):
        return output, model.split(inputs)[1].round().long()

    def loss(self, name, output, target, model, class_weights=None):
        return model.loss(output, target)  # cross entropy over real target tokens, padding ignored

    def metric_sum(self, model, output, target):
        # exact sequences: every real target token right under teacher forcing
        right = (output.argmax(dim=-1) == target) | (target == model.padId)
        return right.all(dim=1).sum()


TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Regression(), Reconstruction(), NextStep(), SequenceToSequence())}


def get_task(name: str) -> Task:
    """The task called ``name`` (a ValueError lists the known ones)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task: expected one of {list(TASKS)}, found {name!r}") from None
