"""``TorchModel``: a fitted torch network as a Spark Transformer, saved without pickle.

``transform`` runs the network in Arrow batches next to the data
(``sparkneural.estimators.scoring``: decode, forward pass and encode overlapped).
On Spark 4.1+ the scoring is a scalar Arrow UDF over the features column
alone, so only that column travels to Python and only the outputs come back;
on earlier lines, and with ``inferenceResources`` (a stage-level resource
profile, which only ``mapInArrow`` takes), it is a ``mapInArrow`` over whole
rows. The weights travel once per executor (``sparkneural.estimators.inference``:
a broadcast, or under Spark Connect a file artifact named by their SHA-256)
and the network is built once per Python worker.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
from pyspark.ml import Model
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

try:  # Spark 4.1+: a scalar Arrow UDF, which sends only its input column to Python
    from pyspark.sql.functions import arrow_udf
except ImportError:
    arrow_udf = None

from sparkneural import cluster
from sparkneural.data.schema import check_features_type
from sparkneural.estimators import inference, scoring
from sparkneural.estimators.params import TorchParams, declarations, stage
from sparkneural.estimators.persistence import (
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
from sparkneural.training.spec import TrainSpec
from sparkneural.training.tasks import Task, get_task


logger = logging.getLogger(__name__)
SCORES = "__sparkneural_scores"  # the struct of outputs, before its fields become the output columns


def arrow_batch_rows(spark) -> int:
    """Rows per Arrow batch that Spark hands to Python (``spark.sql.execution.arrow.maxRecordsPerBatch``)."""
    rows = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "10000") or 10000)
    return rows if rows > 0 else 1 << 30


def _arrow_udf_runs(spark) -> bool:
    """Whether this pyspark has scalar Arrow UDFs and the session's Spark (a Connect server may be older) runs them."""
    return arrow_udf is not None and tuple(int(part) for part in spark.version.split(".")[:2]) >= (4, 1)


def _quoted(name: str) -> Any:
    """The top-level column ``name``, even with a dot in it."""
    return F.col("`" + name.replace("`", "``") + "`")


# Buffers a network computes itself (a transformer's position table) may hold as many elements as its
# saved weights, or this many, whichever is more.
DERIVED_ELEMENTS_FLOOR = 1 << 24


def _check_fits(path: str, architecture: dict[str, Any], saved: dict[str, tuple[int, ...]]) -> None:
    """Refuse an architecture whose network would not hold exactly the saved tensors, before any of it is
    allocated: the metadata has no checksum, so its architectureParams may ask for any size."""
    from sparkneural.nn.registry import TooManyRegistrations, meta_state

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
    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import MLPClassifier, TorchModel
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
        self._activations: tuple[Any, tuple[int | None, int | None]] | None = None  # (architecture, bytes per row)

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
        info = metadata["sparkneural"]
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
        from sparkneural import spark_internals
        from sparkneural import devices

        device, precision = self.getDevice(), self.getPrecision()
        for name in ("device", "precision"):
            declarations(type(self))[name].check(name, self.getOrDefault(name))
        devices.check_on_driver(device, precision, spark_internals.local_master())
        return device, precision

    def _network_input(self, dataset: DataFrame) -> tuple[DataFrame, str]:
        """The frame and column the network reads (models that combine columns override this)."""
        return dataset, self.getFeaturesCol()

    def _chunk_rows(self, spark) -> tuple[int | None, tuple[int | None, int | None], int]:
        """(``inferenceBatchSize``, or the automatic rows per chunk on a CPU; the network's (largest, total)
        activation bytes per row, from which a GPU task picks its rows by its free memory, None when set;
        Spark's rows per Arrow batch)."""
        arrow_rows = arrow_batch_rows(spark)
        if self.getInferenceBatchSize() is not None:
            return self.getInferenceBatchSize(), (None, None), arrow_rows
        if self._activations is None or self._activations[0] is not self.architectureSpec:
            self._activations = (self.architectureSpec, self._measure_activations())
        activations = self._activations[1]
        cpu_rows = scoring.auto_batch_size(*activations, "cpu", arrow_rows)
        logger.debug("%s: inferenceBatchSize automatic: %d rows per chunk on a CPU (largest activation %s bytes per row, "
                     "Arrow batches of %d rows); a GPU task fills %.0f%% of its free memory (activations %s bytes per row)",
                     self.uid, cpu_rows, activations[0], arrow_rows, 100 * scoring.GPU_MEMORY_SHARE, activations[1])
        return cpu_rows, activations, arrow_rows

    def _measure_activations(self) -> tuple[int | None, int | None]:
        """The network's (largest, total) activation bytes per row, from a forward pass on the meta device:
        shapes only, no memory, and no draw from torch's global generator (a fit may be running beside)."""
        import torch

        shape = self.architectureSpec["inputShape"]
        try:
            with torch.device("meta"):
                net = inference.load_network(self.architectureSpec, None, "meta")
                return scoring.activation_bytes(net, np.zeros((2, *shape), np.float32), self._trained_task())
        except Exception as err:  # noqa: BLE001 - a custom module that cannot run on the meta device
            logger.debug("%s: cannot measure the activations on the meta device (%s): fixed chunk sizes", self.uid, err)
            return None, None

    def _scoring_profile(self, spark) -> Any:
        """The ``ResourceProfile`` ``inferenceResources`` asks for (None without), checked before any job."""
        resources = self.getInferenceResources()
        declarations(type(self))["inferenceResources"].check("inferenceResources", resources)
        if resources is None:
            return None
        cluster.check_profile_support("inferenceResources", resources, spark)
        return cluster.task_profile(resources)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        check_features_type(dataset, self.getFeaturesCol())
        original_columns = dataset.columns
        dataset, features = self._network_input(dataset)
        columns = self._output_columns()
        for _, name, _, _ in columns:
            if name in dataset.columns:
                raise ValueError(f"output column {name!r} already exists in the DataFrame; choose another name")
        if not columns:  # every output column named "": nothing to compute
            return dataset.drop(features) if features not in original_columns else dataset
        spark = dataset.sparkSession
        profile = self._scoring_profile(spark)
        payload, key = self._payload(spark)
        shape = tuple(self.architectureSpec["inputShape"])
        width = math.prod(shape)
        task, thresholds = self._trained_task(), self._checked_thresholds()
        device, precision = self._checked_device()
        rows, activations, arrow_rows = self._chunk_rows(spark)
        explicit = self.getInferenceBatchSize() is not None
        encoders = [(k, encode) for k, _, encode, _ in columns]
        names = [name for _, name, _, _ in columns]
        label = f"featuresCol column {self.getFeaturesCol()!r}"

        def scored(batches, column):
            import torch
            from pyspark import TaskContext

            from sparkneural import devices

            context = TaskContext.get()
            torch.set_num_threads(max(1, context.cpus() if context else 1))
            where = devices.task_device(device)
            devices.check_precision(precision, where)
            net = inference.cached_network(f"{key}|{where}", lambda: inference.load_network(*payload.value, where))
            chunk = rows if explicit or where.type != "cuda" else scoring.auto_batch_size(*activations, where, arrow_rows)
            return scoring.score(
                batches, column=column, width=width, batch_size=chunk, outputs=encoders, label=label,
                network=lambda x: scoring.launch(net, x.reshape(-1, *shape), task, thresholds, precision, label),
            )

        if profile is None and _arrow_udf_runs(spark):  # only the features travel to Python, only the outputs back
            def score_arrays(arrays):
                return scoring.as_structs(scored(arrays, lambda array: array), names)

            score_arrays.__annotations__ = {"arrays": Iterator[pa.Array], "return": Iterator[pa.Array]}  # an iterator UDF
            outputs = T.StructType([T.StructField(name, t, True) for _, name, _, t in columns])
            udf = arrow_udf(score_arrays, outputs)
            result = dataset.withColumn(SCORES, udf(_quoted(features)))
            result = result.withColumns({name: F.col(SCORES)[name] for name in names}).drop(SCORES)
        else:
            def score_batches(batches):
                index = None

                def column(batch):
                    nonlocal index
                    index = batch.schema.get_field_index(features) if index is None else index
                    return batch.column(index)

                return scoring.append_columns(scored(batches, column), names)

            schema = T.StructType(dataset.schema.fields + [T.StructField(name, t, True) for _, name, _, t in columns])
            result = dataset.mapInArrow(score_batches, schema, **({} if profile is None else {"profile": profile}))
        return result if features in original_columns else result.drop(features)
