"""``TorchEstimator`` and ``TorchModel``: any registered torch architecture as a Spark ML stage.

``fit`` checks the Params and the data (one aggregate, before any training
job), materialises the training columns to Parquet, runs the training loop
on the chosen backend and returns a ``TorchModel``. The model's
``transform`` runs the network in Arrow batches next to the data.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl.data.materialize import materialize
from sparkdl.data.schema import (
    ColumnCheck,
    DataSummary,
    check_features_type,
    check_label_type,
    check_values,
    column_type,
)
from sparkdl.estimators.model import TorchModel, _build_network
from sparkdl.estimators.persistence import (
    SavedWithoutPickle,
    load_factory,
    save_factory,
    set_params,
    write_metadata,
)
from sparkdl.estimators.params import BACKENDS, INIT_MATCH_MODES, OPTIMIZERS, TASKS, TorchParams, add_accessors
from sparkdl.training.backends import get_backend
from sparkdl.training.loop import LOSSES
from sparkdl.training.spec import TrainSpec

DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse", "reconstruction": "mse", "next_step": "cross_entropy", "seq2seq": "cross_entropy"}


@add_accessors
class TorchEstimator(Estimator, TorchParams, SavedWithoutPickle):
    """Train any ``sparkdl.nn`` architecture (or your own module factory) on a DataFrame.

    >>> est = TorchEstimator(architecture="mlp", architectureParams={"hiddenLayers": [32]},
    ...                      task="classification", epochs=5, numProc=2)
    >>> model = est.fit(train_df)            # features: array<float> or vector, label: 0..k-1
    >>> model.transform(test_df).select("prediction", "probability").show(3)
    """

    _model_class: type | None = None  # the Model class fit returns; set below
    _test_hooks: dict[str, Any] = {}  # faults injected by tests, e.g. {"fail_at_epoch": 3}

    @keyword_only
    def __init__(self, **kwargs: Any) -> None:
        kwargs = self._input_kwargs  # read before super().__init__ can replace it
        super().__init__()
        self._set(**kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> "TorchEstimator":
        """Sets Params by keyword."""
        return self._set(**self._input_kwargs)

    # -- what named estimators override -------------------------------------------
    def _architecture_params(self) -> dict[str, Any]:
        """Keyword arguments of the architecture: ``architectureParams`` plus named Params."""
        params = dict(self.getArchitectureParams())
        if self.isSet(self.dropout) or self.getDropout():
            params.setdefault("dropout", self.getDropout())
        return params

    # -- fit ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        def positive(name: str) -> None:
            value = self.getOrDefault(name)
            if value is None or not value > 0:  # also refuses NaN
                raise ValueError(f"{name}: expected a value > 0, found {value!r}")
            if value == math.inf:
                raise ValueError(f"{name}: expected a finite value > 0, found {value!r}")

        for name in ("epochs", "batchSize", "learningRate", "inferenceBatchSize"):
            positive(name)
        checks = [
            ("optimizer", OPTIMIZERS),
            ("backend", BACKENDS),
            ("task", TASKS),
            ("initFromMatch", INIT_MATCH_MODES),
        ]
        for name, allowed in checks:
            value = self.getOrDefault(name)
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, found {value!r}")
        loss = self.getLossFunction()
        if loss is not None and loss not in LOSSES:
            raise ValueError(f"lossFunction: expected one of {sorted(LOSSES)}, found {loss!r}")
        if not 0.0 <= self.getValidationFraction() < 1.0:
            raise ValueError(f"validationFraction: expected a value in [0, 1), found {self.getValidationFraction()}")
        if not 0.0 <= self.getDropout() < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), found {self.getDropout()}")
        for name in ("weightDecay", "momentum"):
            if not 0 <= self.getOrDefault(name) < math.inf:
                raise ValueError(f"{name}: expected a value >= 0, found {self.getOrDefault(name)}")
        for name in ("gradientClipNorm", "earlyStoppingPatience", "numProc"):
            value = self.getOrDefault(name)
            if value is not None and not 0 < value < math.inf:
                raise ValueError(f"{name}: expected a value > 0 or None, found {value!r}")
        weights = self.getClassWeights()
        if weights is not None:
            if self.getTask() != "classification":
                raise ValueError(f"classWeights: only classification uses them; expected None for task {self.getTask()!r}, found {weights}")
            if len(weights) < 2 or not all(0 <= w < math.inf for w in weights) or not sum(weights) > 0:
                raise ValueError(f"classWeights: expected at least 2 finite weights >= 0 with a positive sum, found {weights}")
        directory = self.getCheckpointDir()
        if directory is not None and os.path.isfile(directory):
            raise ValueError(f"checkpointDir: expected a directory, found the file {directory!r}")
        unfreeze = self.getUnfreezeAfterEpochs()
        if unfreeze is not None and (unfreeze <= 0 or not self.getFreeze()):
            raise ValueError(f"unfreezeAfterEpochs: expected a value > 0 and a non-empty freeze, found {unfreeze!r} with freeze={self.getFreeze()}")
        if self.getUnfrozenLearningRate() is not None and self.getUnfrozenLearningRate() <= 0:
            raise ValueError(f"unfrozenLearningRate: expected a value > 0 or None, found {self.getUnfrozenLearningRate()!r}")
        if self.getResume() and not self.getCheckpointDir():
            raise ValueError("resume: expected checkpointDir to be set, found None")
        validating = self.getValidationCol() is not None or self.getValidationFraction() > 0
        if self.getEarlyStoppingPatience() is not None and not validating:
            raise ValueError("earlyStoppingPatience: needs validation rows; set validationFraction or validationCol")
        metric = self.getEarlyStoppingMetric()
        allowed = ["val_loss", "val_accuracy"] if self.getTask() in ("classification", "next_step", "seq2seq") else ["val_loss", "val_rmse"]
        if metric not in allowed:
            raise ValueError(f"earlyStoppingMetric: expected one of {allowed} for task {self.getTask()!r}, found {metric!r}")

    def _num_proc(self, dataset: DataFrame) -> int:
        if self.getBackend() == "local":
            return 1
        cores = dataset.sparkSession.sparkContext.defaultParallelism
        requested = self.getNumProc()
        if requested is None:
            return cores
        if requested > cores:
            raise ValueError(
                f"numProc: expected at most {cores} (the cores Spark has for tasks), found {requested}"
            )
        return requested

    def _label_is_array(self, dataset: DataFrame) -> bool:
        data_type = dataset.schema[self.getLabelCol()].dataType
        return isinstance(data_type, (T.ArrayType, VectorUDT))

    def _summarize(self, dataset: DataFrame) -> DataSummary:
        """Check column types, then every value in one aggregate."""
        task = self.getTask()
        features, label = self.getFeaturesCol(), self.getLabelCol()
        check_features_type(dataset, features)
        checks = [ColumnCheck(features, "featuresCol", is_array=True)]
        if task not in ("reconstruction", "next_step"):
            check_label_type(dataset, label, allow_array=(task == "regression"))
            checks.append(
                ColumnCheck(label, "labelCol", is_array=self._label_is_array(dataset), integral=(task == "classification"))
            )
        validation = self.getValidationCol()
        if validation is not None:
            data_type = column_type(dataset, validation, "validationCol")
            if not isinstance(data_type, (T.BooleanType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)):
                raise TypeError(f"validationCol: column {validation!r} must be boolean; found {data_type.simpleString()}")
        return check_values(dataset, checks, type(self).__name__)

    def _shapes(self, dataset: DataFrame, summary: DataSummary) -> tuple[tuple[int, ...], int]:
        """(inputShape, outputSize) from the Params and the data summary."""
        features, label = self.getFeaturesCol(), self.getLabelCol()
        width = summary.lengths[features]
        shape = self.getInputShape()
        if shape is not None:
            if not shape or any(d <= 0 for d in shape):
                raise ValueError(f"inputShape: expected positive dimensions, found {shape}")
            if math.prod(shape) != width:
                raise ValueError(
                    f"inputShape: {shape} holds {math.prod(shape)} values, but column {features!r} "
                    f"has arrays of length {width}"
                )
        shape = tuple(shape or [width])
        task = self.getTask()
        if task == "classification":
            weights = self.getClassWeights()
            low, high = summary.min_value[label], summary.max_value[label]
            num_classes = len(weights) if weights else max(2, int(high) + 1)
            if weights and high > num_classes - 1:
                raise ValueError(
                    f"labelCol column {label!r}: expected class labels in 0..{num_classes - 1} "
                    f"(classWeights has {num_classes} entries), found values up to {high:g}"
                )
            if low < 0:
                raise ValueError(f"labelCol column {label!r}: expected class labels >= 0, found {low:g}")
            return shape, num_classes
        if task == "regression":
            return shape, summary.lengths[label] if self._label_is_array(dataset) else 1
        return shape, width  # reconstruction; next_step estimators set their own output size

    def _materialize(self, dataset: DataFrame):
        """Write the training columns to Parquet; a context manager that deletes them."""
        return materialize(
            dataset,
            self.getFeaturesCol(),
            None if self.getTask() in ("reconstruction", "next_step") else self.getLabelCol(),
            self._validation_flag(),
            self.getDataDir(),
        )

    def _architecture_for(self, shape: tuple[int, ...]):
        """The architecture to build for inputs of ``shape`` (named estimators may choose by shape)."""
        return self.getArchitecture()

    def _spec(self, data, shape: tuple[int, ...], output_size: int) -> TrainSpec:
        architecture = self._architecture_for(shape)
        return TrainSpec(
            data=data,
            architecture=architecture if isinstance(architecture, str) else _pickle_factory(architecture),
            architectureParams=self._architecture_params(),
            inputShape=shape,
            outputSize=output_size,
            task=self.getTask(),
            lossFunction=self.getLossFunction() or DEFAULT_LOSS[self.getTask()],
            optimizer=self.getOptimizer(),
            learningRate=self.getLearningRate(),
            momentum=self.getMomentum(),
            weightDecay=self.getWeightDecay(),
            epochs=self.getEpochs(),
            batchSize=self.getBatchSize(),
            seed=self.getSeed(),
            gradientClipNorm=self.getGradientClipNorm(),
            classWeights=tuple(self.getClassWeights()) if self.getClassWeights() else None,
            earlyStoppingPatience=self.getEarlyStoppingPatience(),
            earlyStoppingMetric=self.getEarlyStoppingMetric(),
            checkpointDir=self.getCheckpointDir(),
            resume=self.getResume(),
            verbose=self.getVerbose(),
            progressBar=bool(self.getVerbose()) and _interactive(),
            initWeights=getattr(self, "_init_weights", None),
            freeze=tuple(self.getFreeze()),
            unfreezeAfterEpochs=self.getUnfreezeAfterEpochs(),
            unfrozenLearningRate=self.getUnfrozenLearningRate(),
            testHooks=dict(self._test_hooks),
        )

    def _check(self, dataset: DataFrame, summary: DataSummary | None = None):
        """Everything that can be wrong, found before any training job: (summary, shape, outputSize, numProc)."""
        self._validate_params()
        num_proc = self._num_proc(dataset)
        summary = summary or self._summarize(dataset)
        shape, output_size = self._shapes(dataset, summary)
        if summary.rows < num_proc:
            raise ValueError(f"numProc: expected at most one rank per row ({summary.rows} rows), found {num_proc}")
        architecture = self._architecture_for(shape)
        if isinstance(architecture, str):
            from sparkdl.nn.registry import check_kwargs

            check_kwargs(architecture, self._architecture_params())
        # Building the network once here surfaces its own argument errors before any job.
        network = _build_network(self._spec(None, shape, output_size).__dict__, None)
        self._check_transfer(network)
        return summary, shape, output_size, num_proc

    def _check_transfer(self, network) -> None:
        """Check ``freeze`` against the network; read and match the ``initFrom`` weights."""
        from sparkdl.training.transfer import is_frozen, match_weights

        names = [name for name, _ in network.named_parameters()]
        for prefix in self.getFreeze():
            if not any(is_frozen(name, [prefix]) for name in names):
                raise ValueError(f"freeze: prefix {prefix!r} matches no parameter; the network's parameters are {names}")
        self._init_weights, self._init_report = None, None
        paths = self.getInitFrom()
        if paths is None:
            return
        sources = [_saved_weights(path) for path in ([paths] if isinstance(paths, str) else paths)]
        target = {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}
        weights, report = match_weights(target, sources, self.getInitFromMatch(), self.getInitFromPrefixes())
        if not weights:
            raise ValueError(
                f"initFrom: no saved tensor fits the network ({len(report['skipped'])} tried with "
                f"initFromMatch={self.getInitFromMatch()!r}); try initFromMatch='order' or initFromPrefixes"
            )
        self._init_weights, self._init_report = weights, report

    def _train(self, data, shape, output_size, num_proc) -> "TorchModel":
        spec = self._spec(data, shape, output_size)
        result = get_backend(self.getBackend(), num_proc, self.getVerbose()).run(spec)
        model = (self._model_class or TorchModel)._from_training(spec, result)
        model.initReport = self._init_report
        if self._init_report and self.getVerbose():
            from sparkdl.training.transfer import format_report

            print(format_report(self._init_report), flush=True)
        self._copyValues(model)
        return model

    def _fit(self, dataset: DataFrame) -> "TorchModel":
        _, shape, output_size, num_proc = self._check(dataset)
        with self._materialize(dataset) as data:
            return self._train(data, shape, output_size, num_proc)

    def fitMultiple(self, dataset: DataFrame, paramMaps):
        """Fit one model per param map, materialising the training data once for all of them.

        The Parquet data is deleted after the last model is fitted, or when
        a fit fails. Param maps that change which data is used (columns,
        task, validation split, seed) fall back to one materialisation each.
        """
        estimators = [self.copy(m) for m in paramMaps]
        if any(p.name in DATA_PARAMS for m in paramMaps for p in m):
            return super().fitMultiple(dataset, paramMaps)
        return _SharedDataFits(self, estimators, dataset)

    def _validation_flag(self):
        if self.getValidationCol() is not None:
            return self.getValidationCol()
        if self.getValidationFraction() > 0:
            return F.rand(self.getSeed()) < F.lit(self.getValidationFraction())
        return None

    # -- persistence (write/read/load come from SavedWithoutPickle) ---------------------
    def _save_to(self, path: str) -> None:
        extra: dict[str, Any] = {"pickled": False}
        if callable(self.getArchitecture()):
            extra = {"pickled": True, "pickleSha256": save_factory(path, _pickle_factory(self.getArchitecture()))}
        write_metadata(path, self, extra)

    @classmethod
    def _load_from(cls, path: str, metadata: dict[str, Any], allowPickle: bool):
        import cloudpickle

        instance = cls()
        instance._resetUid(metadata["uid"])
        set_params(instance, metadata)
        info = metadata["sparkdl"]
        if info.get("pickled"):
            instance._set(architecture=cloudpickle.loads(load_factory(path, info["pickleSha256"], allowPickle)))
        return instance

    def copy(self, extra=None):
        copied = super().copy(extra)
        copied._test_hooks = dict(self._test_hooks)
        return copied


# Params that change which rows and columns are materialised.
DATA_PARAMS = {"featuresCol", "labelCol", "task", "validationCol", "validationFraction", "seed", "dataDir"}


class _SharedDataFits:
    """Thread-safe iterator of (index, model) that trains every estimator on one materialisation."""

    def __init__(self, owner: TorchEstimator, estimators: list[TorchEstimator], dataset: DataFrame):
        self.owner, self.estimators, self.dataset = owner, estimators, dataset
        self.lock = threading.Lock()
        self.next_index, self.done = 0, 0
        self.context = None
        self.data = None
        self.summary: DataSummary | None = None

    def __iter__(self):
        return self

    def __next__(self):
        with self.lock:
            if self.next_index >= len(self.estimators):
                raise StopIteration
            index = self.next_index
            self.next_index += 1
            try:
                if self.data is None:
                    self.summary = self.owner._summarize(self.dataset)
                    self.context = self.owner._materialize(self.dataset)
                    self.data = self.context.__enter__()
            except BaseException:
                self.close()
                raise
        estimator = self.estimators[index]
        try:
            _, shape, output_size, num_proc = estimator._check(self.dataset, self.summary)
            model = estimator._train(self.data, shape, output_size, num_proc)
        except BaseException:
            self.close()
            raise
        with self.lock:
            self.done += 1
            if self.done == len(self.estimators):
                self.close()
        return index, model

    def close(self) -> None:
        if self.context is not None:
            context, self.context = self.context, None
            context.__exit__(None, None, None)

    def __del__(self):
        self.close()


class NamedTorchEstimator(TorchEstimator):
    """An estimator with a fixed architecture and task whose arguments are Params of its own.

    Subclasses set ``_architecture_name``, ``_task``, ``_model_class`` and
    ``_architecture_param_names`` (their own Params passed to the architecture).
    """

    _architecture_name = "mlp"
    _task = "classification"
    _architecture_param_names: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}  # shared Params whose default differs here, e.g. {"labelCol": "target"}

    @keyword_only
    def __init__(self, **kwargs: Any) -> None:
        kwargs = self._input_kwargs  # read before super().__init__ can replace it
        super().__init__()
        self._setDefault(architecture=self._architecture_name, task=self._task, **self._defaults)
        self._set(**kwargs)

    def _architecture_params(self) -> dict[str, Any]:
        params = super()._architecture_params()
        for name in self._architecture_param_names:
            params.setdefault(name, self.getOrDefault(name))
        return params


def _interactive() -> bool:
    import sys

    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


def _saved_weights(path: str) -> dict:
    """The weights of a fitted sparkdl model saved at ``path``, in the network's definition order."""
    from sparkdl.estimators.persistence import read_metadata

    try:
        metadata = read_metadata(path)
        if "weightsSha256" not in metadata["sparkdl"]:
            kind = metadata["class"].rpartition(".")[2]
            raise ValueError(f"path {path!r} holds a {kind} without weights; expected a fitted model")
        # the rebuilt network gives the definition order that matching by order needs
        network = TorchModel.load(path).network()
    except ValueError as err:
        raise ValueError(f"initFrom: {err}") from None
    return {name: tensor.numpy() for name, tensor in network.state_dict().items()}


def _pickle_factory(factory) -> bytes:
    """Cloudpickle a module factory so executors can load it without the user's files.

    Functions from a user's own module (a script, a test file, a notebook
    helper) are pickled by value: executors may not be able to import it.
    """
    import sys

    import cloudpickle

    module = sys.modules.get(getattr(factory, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    by_value = module is not None and module.__name__ != "__main__" and path and "site-packages" not in path and not module.__name__.startswith("sparkdl")
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(factory)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


TorchEstimator._model_class = TorchModel
