"""What a training run needs, as plain data: it is pickled to every rank.

The training Params are declared here, once (``TRAINING``): the estimators
make their pyspark Params from these declarations, and ``TrainSpec`` gets one
field per declaration, with the same default. The path of a Param such as
``learningRate`` is: its declaration below -> ``TorchEstimator._spec`` (which
copies every declared training Param by name) -> ``TrainSpec.learningRate``
-> ``sparkneural.training.loop.make_optimizer`` -> ``torch.optim``.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass
from typing import Any

from sparkneural.data.filesystems import check_location, location_converter
from sparkneural.devices import DEVICES, PRECISIONS
from sparkneural.training.declared import (
    Declared,
    Interval,
    Options,
    optional,
    to_bool,
    to_float,
    to_float_list,
    to_int,
    to_string,
    to_string_list,
)

POSITIVE = Interval(0, closed="neither")
POSITIVE_OR_NONE = Interval(0, closed="neither", optional=True)
NON_NEGATIVE = Interval(0)


def _names(module: str, table: str):
    """The keys of a lookup table, read when a value is checked (the table's module imports torch)."""

    def names() -> list[str]:
        import importlib

        return list(getattr(importlib.import_module(module), table))

    return names


TRAINING = (
    Declared("epochs", "number of full passes over the training data (> 0)", to_int, 10, POSITIVE),
    Declared("batchSize", "mini-batch size per rank (> 0)", to_int, 64, POSITIVE),
    Declared("optimizer", "adam, adamw, sgd, rmsprop or adadelta", to_string, "adam",
             Options(source=_names("sparkneural.training.loop", "OPTIMIZERS"))),
    Declared("learningRate", "step size of the optimizer (> 0)", to_float, 0.001, POSITIVE),
    Declared("momentum", "momentum of the sgd optimizer (>= 0)", to_float, 0.9, NON_NEGATIVE),
    Declared("weightDecay", "L2 penalty applied by the optimizer (>= 0)", to_float, 0.0, NON_NEGATIVE),
    Declared("lossFunction", "loss: cross_entropy, mse, l1, huber or bce (None: the task's default)", optional(to_string), None,
             Options(source=lambda: sorted(_names("sparkneural.training.tasks", "LOSSES")()), optional=True)),
    Declared("classWeights", "weight of each class in the cross-entropy loss (None: equal)", optional(to_float_list), None),
    Declared("gradientClipNorm", "clip the gradient's global L2 norm to this value (None: no clipping)", optional(to_float), None, POSITIVE_OR_NONE),
    Declared("earlyStoppingPatience", "stop after this many epochs without improvement of earlyStoppingMetric (None: never)", optional(to_int), None, POSITIVE_OR_NONE),
    Declared("earlyStoppingMetric", "validation metric that early stopping watches: val_loss, val_accuracy or val_rmse", to_string, "val_loss"),
    Declared("checkpointDir", "directory for the checkpoint written after every epoch, a path or a URI as dataDir takes (None: no checkpoints)",
             location_converter("checkpointDir"), None, check_location),
    Declared("resume", "continue from the last checkpoint in checkpointDir", to_bool, False),
    Declared("freeze", "parameter-name prefixes kept fixed during training, e.g. ['features.'] (empty: train everything)", to_string_list, []),
    Declared("unfreezeAfterEpochs", "train the frozen parameters too from this many epochs on (None: they stay frozen)", optional(to_int), None),
    Declared("unfrozenLearningRate", "learning rate of the parameters once unfrozen (None: learningRate)", optional(to_float), None, POSITIVE_OR_NONE),
    Declared("dataLoader", "how each rank reads the training Parquet: 'pyarrow', or 'petastorm' (its make_batch_reader; "
             "needs sparkneural[petastorm], which loads only with pyarrow < 16, i.e. on the Spark 3.5 line)", to_string, "pyarrow",
             Options(("pyarrow", "petastorm"))),
    Declared("shuffleBufferRows", "rows each rank shuffles at a time: a shard with at most this many rows is read once and kept in "
             "memory, a larger one is streamed through windows of this many rows in a new random order each epoch, so a rank "
             "holds about twice this many rows (or two 8 MiB row groups, if larger) whatever the data size (None: as many rows as "
             "64 MiB hold); dataLoader='petastorm' always reads the whole data set",
             optional(to_int), None, POSITIVE_OR_NONE),
    Declared("device", "where training and transform compute: auto (a GPU when the rank or task sees one), cpu or cuda (a GPU, "
             "else an error); a rank or task takes the GPU Spark assigned to its task (spark.task.resource.gpu.amount), else "
             "the one of its local rank", to_string, "auto", Options(DEVICES)),
    Declared("precision", "32, bf16-mixed (autocast to bfloat16, CPU or GPU) or 16-mixed (autocast to float16 with a loss "
             "scaler, GPU only), in training and transform", to_string, "32", Options(PRECISIONS)),
    Declared("seed", "random seed of initialisation, shuffling and the validation split", to_int, 0),
    Declared("verbose", "0 or False: quiet, 1 or True: one line per epoch, 2: also the backend's own logs", to_int, 1, Options((0, 1, 2))),
)

# Fields that are not Params: what the estimator found out about the data and the network.
_RUN_FIELDS = [
    ("data", Any),  # sparkneural.data.materialize.ParquetData
    ("architecture", Any),  # a registry name, or a cloudpickled module factory (bytes)
    ("architectureParams", dict),
    ("inputShape", tuple),
    ("outputSize", int),
    # the name of a sparkneural.training.tasks.Task: plain data, so that unpickling a spec
    # (in processes that only launch a rank) does not import torch
    ("task", str, field(default="classification")),
    ("progressBar", bool, field(default=False)),  # redraw a bar while an epoch runs (the driver's stdout is a terminal)
    ("initWeights", Any, field(default=None)),  # name -> numpy array, loaded before the first step
    ("threads", Any, field(default=None)),  # torch threads per rank; None: the cores of this host / local ranks
    # cloudpickled callables that every rank calls as hook(spec, rank, epoch) as each epoch (1-based) begins
    ("epochHooks", tuple, field(default=())),
    ("reports", Any, field(default=None)),  # sparkneural.training.reports.ReportAddress: where ranks report (None: they print)
    # the fit's id, written into its checkpoints; a restart resumes only from a checkpoint of ``resumeRun``
    # (None: from any), so a stale checkpoint of an earlier fit is never taken for this one's
    ("runId", Any, field(default=None)),
    ("resumeRun", Any, field(default=None)),
]


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


TrainSpec = make_dataclass(
    "TrainSpec",
    _RUN_FIELDS + [(d.name, Any, field(default=_frozen(d.default))) for d in TRAINING],
    frozen=True,
)
TrainSpec.__module__ = __name__  # pickled by reference to the ranks
TrainSpec.__doc__ = "Everything one training run needs; one field per declared training Param (``TRAINING``)."


def training_values(get: Any, default_loss: str) -> dict[str, Any]:
    """The declared training Params, read with ``get(name)``, as ``TrainSpec`` fields.

    ``lossFunction`` None becomes ``default_loss``, the task's.
    """
    values = {d.name: _frozen(get(d.name)) for d in TRAINING}
    return {**values, "lossFunction": values["lossFunction"] or default_loss}
