"""What a training run needs, as plain data: it is pickled to every rank."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sparkdl.data.materialize import ParquetData


@dataclass(frozen=True)
class TrainSpec:
    data: ParquetData
    architecture: str | bytes  # a registry name, or a cloudpickled module factory
    architectureParams: dict[str, Any]
    inputShape: tuple[int, ...]
    outputSize: int
    task: str = "classification"  # classification | regression | reconstruction | next_step | seq2seq
    lossFunction: str = "cross_entropy"
    optimizer: str = "adam"
    learningRate: float = 1e-3
    momentum: float = 0.9
    weightDecay: float = 0.0
    epochs: int = 10
    batchSize: int = 64
    seed: int = 0
    gradientClipNorm: float | None = None
    classWeights: tuple[float, ...] | None = None
    earlyStoppingPatience: int | None = None
    earlyStoppingMetric: str = "val_loss"
    checkpointDir: str | None = None
    resume: bool = False
    verbose: int = 1
    progressBar: bool = False  # redraw a bar while an epoch runs (the driver's stdout is a terminal)
    initWeights: dict[str, Any] | None = None  # name -> numpy array, loaded before the first step
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept fixed
    unfreezeAfterEpochs: int | None = None
    unfrozenLearningRate: float | None = None
    threads: int | None = None  # torch threads per rank; None: the cores of this host / local ranks
    testHooks: dict[str, Any] = field(default_factory=dict)  # e.g. {"fail_at_epoch": 3}
