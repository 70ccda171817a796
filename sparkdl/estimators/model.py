"""``TorchModel``: a fitted torch network as a Spark Transformer, saved without pickle.

``transform`` runs the network in Arrow batches next to the data (see
``sparkdl.estimators.inference``); the weights travel once per executor (a
broadcast, or under Spark Connect a file artifact named by their SHA-256) and
the network is built once per Python worker.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from pyspark.ml import Model
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from sparkdl.data.schema import check_features_type
from sparkdl.estimators import inference
from sparkdl.estimators.params import TorchParams, declarations, stage
from sparkdl.estimators.persistence import (
    HISTORY,
    WEIGHTS,
    SavedWithoutPickle,
    load_factory,
    load_weights,
    read_json_file,
    save_factory,
    save_weights,
    write_metadata,
    set_params,
)
from sparkdl.training.spec import TrainSpec
from sparkdl.training.tasks import Task, get_task


# Buffers a network computes itself (a transformer's position table) may hold as many elements as its
# saved weights, or this many, whichever is more.
DERIVED_ELEMENTS_FLOOR = 1 << 24


def _check_fits(path: str, architecture: dict[str, Any], saved: dict[str, tuple[int, ...]]) -> None:
    """Refuse an architecture whose network would not hold exactly the saved tensors, before any of it is
    allocated: the metadata has no checksum, so its architectureParams may ask for any size."""
    from sparkdl.nn.registry import TooManyRegistrations, meta_state

    try:
        planned, derived = meta_state(lambda: inference.load_network(architecture, None, "meta"), 16 * len(saved) + 256)
    except TooManyRegistrations as err:
        raise ValueError(f"path {path!r}: the weights do not match the stored architecture ({err} "
                         f"for the {len(saved)} tensors in {WEIGHTS})") from None
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
        if isinstance(architecture["architecture"], bytes):
            return  # a trusted factory (allowPickle) that cannot be built on the meta device: the full build checks it
        raise ValueError(f"path {path!r}: the weights do not match the stored architecture ({err})") from None
    for name, shape in planned.items():
        if name not in saved:
            problem = f"{WEIGHTS} lacks {name!r} of shape {list(shape)}"
        elif saved[name] != shape:
            problem = f"{WEIGHTS} holds {name!r} of shape {list(saved[name])}, the architecture makes {list(shape)}"
        else:
            continue
        raise ValueError(f"path {path!r}: the weights do not match the stored architecture ({problem})")
    extra = sorted(set(saved) - set(planned))
    if extra:
        raise ValueError(f"path {path!r}: the weights do not match the stored architecture "
                         f"({WEIGHTS} holds {extra[0]!r}, which the architecture does not make)")
    elements = sum(math.prod(shape) for shape in saved.values())
    if derived > max(elements, DERIVED_ELEMENTS_FLOOR):
        raise ValueError(f"path {path!r}: the stored architecture would compute {derived:,} elements of buffers "
                         f"for {elements:,} saved weights; expected at most {max(elements, DERIVED_ELEMENTS_FLOOR):,}")


@stage
class TorchModel(Model, TorchParams, SavedWithoutPickle):
    """A fitted torch network as a Spark Transformer.

    ``transform`` adds, for classification, ``prediction`` (double) and
    ``rawPrediction``/``probability`` (MLlib vectors); for regression,
    ``prediction`` (double, or array<float> for several outputs).

    Any saved model loads with ``TorchModel.load``, as the class it was saved from:

    >>> import os, tempfile
    >>> from sparkdl.datasets import digits
    >>> from sparkdl.estimators import MLPClassifier, TorchModel
    >>> df = digits(spark).limit(100)
    >>> model = MLPClassifier(hiddenLayers=[8], epochs=1, backend="local", verbose=0).fit(df)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model.save(os.path.join(tmp, "mlp"))
    ...     loaded = TorchModel.load(os.path.join(tmp, "mlp"))
    >>> type(loaded).__name__, loaded.transform(df).select("prediction").count()
    ('MLPClassifierModel', 100)
    """

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._set(**params)
        self.weights: dict[str, np.ndarray] = {}
        self.architectureSpec: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []
        self.bestEpoch: int | None = None
        self.rankDigests: list[str] = []
        self.rankEpochs: list[int] = []
        self.epochsRun: list[int] = []
        self.initReport: dict[str, list[str]] | None = None  # what initFrom loaded, when it was set
        # one record per restart of lost ranks: which were lost and why, the epoch resumed from, when
        self.restarts: list[dict[str, Any]] = []
        # where each rank trained: {"rank", "host", "device", "gpuAddress"} (the GPU Spark assigned, or None)
        self.rankDevices: list[dict[str, Any]] = []
        self._shared: tuple[Any, Any, str] | None = None  # (session and weights it was made for, payload, cache key)

    @classmethod
    def _from_training(cls, spec: TrainSpec, result) -> "TorchModel":
        model = cls()
        model.weights = result.weights
        model.architectureSpec = {
            "architecture": spec.architecture,
            "architectureParams": spec.architectureParams,
            "inputShape": list(spec.inputShape),
            "outputSize": spec.outputSize,
            "task": spec.task,
        }
        model.history = result.history
        model.bestEpoch = result.bestEpoch
        model.rankDigests = result.rankDigests
        model.rankEpochs = result.rankEpochs
        model.epochsRun = result.epochsRun
        model.rankDevices = result.rankDevices
        return model

    def _trained_task(self) -> Task:
        """What the network was trained to do (its output columns come from it)."""
        return get_task(self.architectureSpec["task"])

    @property
    def numClasses(self) -> int | None:
        return self.architectureSpec["outputSize"] if self._trained_task().is_classifier else None

    def network(self):
        """A torch module holding the fitted weights, in eval mode."""
        return inference.load_network(self.architectureSpec, self.weights)

    # -- persistence ----------------------------------------------------------------
    def _save_to(self, path: str) -> None:
        spec = self.architectureSpec
        pickled = isinstance(spec["architecture"], bytes)
        extra = {
            "architecture": None if pickled else spec["architecture"],
            "pickled": pickled,
            "architectureParams": spec["architectureParams"],
            "inputShape": spec["inputShape"],
            "outputSize": spec["outputSize"],
            "task": spec["task"],
            "bestEpoch": self.bestEpoch,
            "restarts": self.restarts,
            "rankDevices": self.rankDevices,
            "weightsSha256": save_weights(path, self.weights),
        }
        if pickled:
            extra["pickleSha256"] = save_factory(path, spec["architecture"])
        with open(os.path.join(path, "history.json"), "w") as f:
            json.dump(self.history, f)
        write_metadata(path, self, extra)

    @classmethod
    def _load_from(cls, path: str, metadata: dict[str, Any], allowPickle: bool) -> "TorchModel":
        info = metadata["sparkdl"]
        model = cls()
        model._resetUid(metadata["uid"])
        set_params(model, metadata)
        architecture = load_factory(path, info["pickleSha256"], allowPickle) if info["pickled"] else info["architecture"]
        model.architectureSpec = {
            "architecture": architecture,
            "architectureParams": info["architectureParams"],
            "inputShape": info["inputShape"],
            "outputSize": info["outputSize"],
            "task": info["task"],
        }
        model.weights = load_weights(path, info["weightsSha256"],
                                     lambda shapes: _check_fits(path, model.architectureSpec, shapes))
        model.bestEpoch = info.get("bestEpoch")
        model.restarts = info.get("restarts", [])
        model.rankDevices = info.get("rankDevices", [])
        model.history = read_json_file(path, HISTORY)
        try:
            model.network()  # the weights must fit the stored architecture
        except (RuntimeError, ValueError, TypeError) as err:
            raise ValueError(f"path {path!r}: the weights do not match the stored architecture ({err})") from None
        return model

    # -- transform ----------------------------------------------------------------
    def _payload(self, spark) -> tuple[Any, str]:
        """What the tasks read (architectureSpec, weights) from, as ``.value`` (``inference.share_network``),
        and the key of the network in each Python worker's cache; made once per session and weights."""
        made_for = (id(spark), id(self.weights))
        if self._shared is None or self._shared[0] != made_for:
            payload = inference.share_network(spark, self.architectureSpec, self.weights)
            token = payload.sha256 if isinstance(payload, inference.WeightsArtifact) else id(self.weights)
            self._shared = (made_for, payload, f"{self.uid}-{token}")
        return self._shared[1], self._shared[2]

    def _output_columns(self) -> list[tuple[str, str, Any, T.DataType]]:
        """(network output, column name, Arrow encoder, Spark type) for each added column."""
        return self._trained_task().output_columns(self)

    def _checked_thresholds(self) -> list[float] | None:
        thresholds = self.getThresholds()
        if thresholds is None:
            return None
        if not self._trained_task().is_classifier or len(thresholds) != self.numClasses:
            expected = f"one value per class ({self.numClasses})" if self._trained_task().is_classifier else f"None for task {self.architectureSpec['task']!r}"
            raise ValueError(f"thresholds: expected {expected}, found {thresholds}")
        declarations(type(self))["thresholds"].check("thresholds", thresholds)
        return thresholds

    def _checked_device(self) -> tuple[str, str]:
        """(device, precision) for transform, checked on the driver where it can tell (``cuda`` with no
        GPU in local mode, float16 on the CPU); each scoring task checks again on its executor."""
        from sparkdl import spark_internals
        from sparkdl import devices

        device, precision = self.getDevice(), self.getPrecision()
        for name in ("device", "precision"):
            declarations(type(self))[name].check(name, self.getOrDefault(name))
        devices.check_on_driver(device, precision, spark_internals.local_master())
        return device, precision

    def _network_input(self, dataset: DataFrame) -> tuple[DataFrame, str]:
        """The frame and column the network reads (models that combine columns override this)."""
        return dataset, self.getFeaturesCol()

    def _transform(self, dataset: DataFrame) -> DataFrame:
        check_features_type(dataset, self.getFeaturesCol())
        original_columns = dataset.columns
        dataset, features = self._network_input(dataset)
        columns = self._output_columns()
        for _, name, _, _ in columns:
            if name in dataset.columns:
                raise ValueError(f"output column {name!r} already exists in the DataFrame; choose another name")
        schema = T.StructType(dataset.schema.fields + [T.StructField(name, t, True) for _, name, _, t in columns])
        payload, key = self._payload(dataset.sparkSession)
        shape = tuple(self.architectureSpec["inputShape"])
        width = math.prod(shape)
        batch_size, task, thresholds = self.getInferenceBatchSize(), self._trained_task(), self._checked_thresholds()
        device, precision = self._checked_device()
        outputs = [(k, name, encode) for k, name, encode, _ in columns]
        label = f"featuresCol column {self.getFeaturesCol()!r}"

        def run(batches):
            import torch
            from pyspark import TaskContext

            from sparkdl import devices

            context = TaskContext.get()
            torch.set_num_threads(max(1, context.cpus() if context else 1))
            where = devices.task_device(device)
            devices.check_precision(precision, where)
            net = inference.cached_network(f"{key}|{where}", lambda: inference.load_network(*payload.value, where))
            return inference.predict_batches(
                batches, features=features, width=width, batch_size=batch_size,
                network=lambda x: inference.forward(net, x.reshape(-1, *shape), task, thresholds, precision, label),
                outputs=outputs, label=label, check_finite=False,
            )

        result = dataset.mapInArrow(run, schema)
        added = [name for _, name, _, _ in columns]
        return result if features in original_columns else result.select(*original_columns, *added)
