"""``TorchEstimator`` and ``TorchModel``: any registered torch architecture as a Spark ML stage.

``fit`` checks the Params and the data (one aggregate, before any training
job), plans the network, materialises the training columns to Parquet, runs
the training loop on the chosen backend and returns a ``TorchModel``; each
step hands its result to the next, and nothing is stored on the estimator. The model's
``transform`` runs the network in Arrow batches next to the data.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Any

from pyspark.ml import Estimator
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkneural import cluster, spark_internals
from sparkneural.data.filesystems import is_file, join
from sparkneural.data.materialize import materialize, petastorm_error
from sparkneural.data.schema import (
    ColumnCheck,
    DataSummary,
    check_features_type,
    check_label_type,
    check_values,
    column_type,
)
from sparkneural.estimators.model import TorchModel
from sparkneural.estimators.persistence import (
    SavedWithoutPickle,
    load_factory,
    save_factory,
    set_params,
    write_metadata,
)
from sparkneural.estimators.params import TorchParams, check_declared, stage
from sparkneural.training.backends import HOROVOD_SETUP, get_backend, horovod_error
from sparkneural.training.loop import GLOBAL_RNG_LOCK, build_network
from sparkneural.training.restarts import run_with_restarts
from sparkneural.training.spec import TrainSpec, training_values
from sparkneural.training.tasks import Task, get_task
from sparkneural.tracking import fit_tracking


@dataclass(frozen=True)
class FitPlan:
    """What ``fit`` found out before any training job; passed along, never stored on the estimator."""

    summary: Any  # the data summary (DataSummary, or an estimator's own)
    task: Task
    inputShape: tuple[int, ...]
    outputSize: int
    numProc: int
    architecture: Any  # a registry name or a module factory
    architectureParams: dict[str, Any]
    initWeights: dict[str, Any] | None = None
    initReport: dict[str, list[str]] | None = None


@stage
class TorchEstimator(Estimator, TorchParams, SavedWithoutPickle):
    """Train any ``sparkneural.nn`` architecture (or your own module factory) on a DataFrame.

    ``fit`` is a chain of steps that return values: check the Params,
    summarise the data (one aggregate), plan (shapes, network, transfer),
    materialise the training columns, train on the backend, build the model.
    Nothing is stored on the estimator while fitting.

    >>> from sparkneural.datasets import digits
    >>> from sparkneural.estimators import TorchEstimator
    >>> df = digits(spark).limit(200)
    >>> est = TorchEstimator(architecture="mlp", architectureParams={"hiddenLayers": [16]},
    ...                      task="classification", epochs=2, backend="local", verbose=0)
    >>> model = est.fit(df)
    >>> model.transform(df).select("prediction", "probability", "rawPrediction").columns
    ['prediction', 'probability', 'rawPrediction']
    """

    _model_class: type | None = None  # the Model class fit returns; set below
    _test_hooks: tuple[Any, ...] = ()  # callables each rank calls as hook(spec, rank, epoch) as an epoch begins: tests inject faults

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._set(**params)

    # -- what named estimators override -------------------------------------------
    def _training_task(self) -> Task:
        """The task object: its loss, metrics, targets and output columns."""
        return get_task(self.getTask())

    def _architecture_params(self, summary: Any) -> dict[str, Any]:
        """Keyword arguments of the architecture: ``architectureParams`` plus named Params."""
        params = dict(self.getArchitectureParams())
        if self.isSet(self.dropout) or self.getDropout():
            params.setdefault("dropout", self.getDropout())
        return params

    def _architecture_for(self, shape: tuple[int, ...]):
        """The architecture to build for inputs of ``shape`` (named estimators may choose by shape)."""
        return self.getArchitecture()

    # -- fit: check -> summarise -> plan -> materialise -> train -> model ------------
    def _validate_params(self) -> None:
        """Each declared Param against its constraint, then the rules that tie Params together."""
        check_declared(self)
        if (resources := self.getTrainingResources()) is not None:
            if self.getBackend() == "local":
                raise ValueError(f"trainingResources: backend 'local' trains on the driver, not in a Spark task; expected None, "
                                 f"found {resources!r} (or use a distributed backend)")
            if self.getNumProc() is None:
                raise ValueError(f"numProc: expected the number of ranks with trainingResources={resources!r}: how many tasks "
                                 "of that profile Spark can run at once is not known before its stage starts")
        if self.getBackend() == "horovod" and (error := horovod_error()):
            raise ValueError(f"backend: 'horovod' needs horovod built for PyTorch, but `import horovod.torch` failed ({error}); "
                             f"run {HOROVOD_SETUP}, or use backend='torch_distributor' or 'auto'")
        if self.getDataLoader() == "petastorm" and (error := petastorm_error()):
            import pyarrow

            raise ValueError(f"dataLoader: 'petastorm' needs petastorm, which cannot be imported here with pyarrow {pyarrow.__version__} "
                             f"({error}); use dataLoader='pyarrow', or the Spark 3.5 line (make setup SPARK=3.5, sparkneural[petastorm])")
        task = self._training_task()
        weights = self.getClassWeights()
        if weights is not None:
            if not task.is_classifier:
                raise ValueError(f"classWeights: only classification uses them; expected None for task {self.getTask()!r}, found {weights}")
            if len(weights) < 2 or not all(0 <= w < math.inf for w in weights) or not sum(weights) > 0:
                raise ValueError(f"classWeights: expected at least 2 finite weights >= 0 with a positive sum, found {weights}")
        directory = self.getCheckpointDir()
        if directory is not None and is_file(directory):
            raise ValueError(f"checkpointDir: expected a directory, found the file {directory!r}")
        unfreeze = self.getUnfreezeAfterEpochs()
        if unfreeze is not None and (unfreeze <= 0 or not self.getFreeze()):
            raise ValueError(f"unfreezeAfterEpochs: expected a value > 0 and a non-empty freeze, found {unfreeze!r} with freeze={self.getFreeze()}")
        if self.getBackend() != "local":
            from sparkneural.training.backends.environment import configured_names

            configured_names()  # a malformed spark.sparkneural.rankEnv fails here, before any job
        if self.getResume() and not self.getCheckpointDir():
            raise ValueError("resume: expected checkpointDir to be set, found None")
        validating = self.getValidationCol() is not None or self.getValidationFraction() > 0
        if self.getEarlyStoppingPatience() is not None and not validating:
            raise ValueError("earlyStoppingPatience: needs validation rows; set validationFraction or validationCol")
        self._check_device()
        allowed = list(task.early_stopping_metrics)
        if self.getEarlyStoppingMetric() not in allowed:
            raise ValueError(f"earlyStoppingMetric: expected one of {allowed} for task {self.getTask()!r}, found {self.getEarlyStoppingMetric()!r}")

    def _check_device(self) -> None:
        """What the driver can tell of ``device`` and ``precision`` before any job; ranks on a cluster check the rest."""
        from sparkneural import devices
        from sparkneural.training.backends import resolve

        device, backend = self.getDevice(), resolve(self.getBackend())
        devices.check_on_driver(device, self.getPrecision(), backend == "local" or spark_internals.local_master())
        if device != "cuda":
            return  # auto: ranks whose runtime cannot use their GPU train on the CPU
        if backend == "horovod":
            from sparkneural.training.collective import horovod_gpu_error

            if error := horovod_gpu_error():
                raise ValueError(error)

    def _num_proc(self, dataset: DataFrame) -> int:
        if self.getBackend() == "local":
            return 1
        requested, resources = self.getNumProc(), self.getTrainingResources()
        if requested is not None and cluster.is_connect(dataset.sparkSession):
            return requested  # a Connect client may not know the slots: the barrier stage checks them
        cpus = (resources or {}).get("cpus", 1)
        cores = cluster.task_slots(dataset.sparkSession) // cpus
        if requested is None:
            return cores
        if requested > cores:
            per_task = f", {cpus} per rank as trainingResources asks" if cpus > 1 else ""
            raise ValueError(
                f"numProc: expected at most {cores} (the cores Spark has for tasks{per_task}), found {requested}"
            )
        return requested

    def _label_is_array(self, dataset: DataFrame) -> bool:
        data_type = dataset.schema[self.getLabelCol()].dataType
        return isinstance(data_type, (T.ArrayType, VectorUDT))

    def _summarize(self, dataset: DataFrame) -> DataSummary:
        """Check column types, then every value in one aggregate."""
        task = self._training_task()
        features, label = self.getFeaturesCol(), self.getLabelCol()
        check_features_type(dataset, features)
        checks = [ColumnCheck(features, "featuresCol", is_array=True)]
        if task.has_label:
            check_label_type(dataset, label, allow_array=task.label_may_be_array)
            checks.append(
                ColumnCheck(label, "labelCol", is_array=self._label_is_array(dataset), integral=task.integral_label)
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
        task = self._training_task()
        if not task.has_label:
            return shape, width  # reconstruction; next-step estimators set their own output size
        if not task.integral_label:
            return shape, summary.lengths[label] if self._label_is_array(dataset) else 1
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
        thresholds = self.getThresholds()
        if thresholds is not None and len(thresholds) != num_classes:
            raise ValueError(f"thresholds: expected one value per class ({num_classes}), found {len(thresholds)}")
        return shape, num_classes

    def _plan(self, dataset: DataFrame, summary: Any = None) -> FitPlan:
        """Everything that can be wrong, found before any training job."""
        self._validate_params()
        if (resources := self.getTrainingResources()) is not None:
            cluster.check_profile_support("trainingResources", resources, dataset.sparkSession)
        num_proc = self._num_proc(dataset)
        summary = summary or self._summarize(dataset)
        shape, output_size = self._shapes(dataset, summary)
        if summary.rows < num_proc:
            raise ValueError(f"numProc: expected at most one rank per row ({summary.rows} rows), found {num_proc}")
        architecture, arguments = self._architecture_for(shape), self._architecture_params(summary)
        if isinstance(architecture, str):
            from sparkneural.nn.registry import check_kwargs

            check_kwargs(architecture, arguments)
        plan = FitPlan(summary, self._training_task(), shape, output_size, num_proc, architecture, arguments)
        with GLOBAL_RNG_LOCK:  # initial weights come from torch's global generator
            # Building the network once here surfaces its own argument errors before any job.
            network = build_network(self._spec(None, plan))
            return self._with_transfer(plan, network)

    def _with_transfer(self, plan: FitPlan, network) -> FitPlan:
        """Check ``freeze`` against the network; read and match the ``initFrom`` weights."""
        from sparkneural.training.transfer import is_frozen, match_weights

        names = [name for name, _ in network.named_parameters()]
        for prefix in self.getFreeze():
            if not any(is_frozen(name, [prefix]) for name in names):
                raise ValueError(f"freeze: prefix {prefix!r} matches no parameter; the network's parameters are {names}")
        paths = self.getInitFrom()
        if paths is None:
            return plan
        sources = [_saved_weights(path) for path in ([paths] if isinstance(paths, str) else paths)]
        target = {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}
        weights, report = match_weights(target, sources, self.getInitFromMatch(), self.getInitFromPrefixes())
        if not weights:
            raise ValueError(
                f"initFrom: no saved tensor fits the network ({len(report['skipped'])} tried with "
                f"initFromMatch={self.getInitFromMatch()!r}); try initFromMatch='order' or initFromPrefixes"
            )
        return replace(plan, initWeights=weights, initReport=report)

    def _materialize(self, dataset: DataFrame, summary: Any):
        """Write the training columns to Parquet; a context manager that deletes them."""
        has_label = self._training_task().has_label
        return materialize(
            dataset, self.getFeaturesCol(), self.getLabelCol() if has_label else None, self._validation_flag(), self.getDataDir()
        )

    def _spec(self, data, plan: FitPlan) -> TrainSpec:
        """The plain data every rank receives: the declared training Params, copied by name, and the plan."""
        architecture = plan.architecture
        return TrainSpec(
            data=data,
            architecture=architecture if isinstance(architecture, str) else _pickle_factory(architecture),
            architectureParams=plan.architectureParams,
            inputShape=plan.inputShape,
            outputSize=plan.outputSize,
            task=plan.task.name,
            progressBar=bool(self.getVerbose()) and _interactive(),
            initWeights=plan.initWeights,
            threads=(self.getTrainingResources() or {}).get("cpus"),  # the CPUs the rank's task asked for
            epochHooks=tuple(_pickle_factory(hook) for hook in self._test_hooks),
            runId=uuid.uuid4().hex,
            **training_values(self.getOrDefault, plan.task.default_loss),
        )

    def _train(self, data, plan: FitPlan, spark) -> "TorchModel":
        spec = self._spec(data, plan)
        # named cpus: Spark's slot count for a barrier stage fails on a task profile without them
        profile = cluster.task_profile(self.getTrainingResources(), default_cpus=cluster.task_cpus(spark))
        backend = get_backend(self.getBackend(), plan.numProc, self.getVerbose(), spark=spark, profile=profile)
        restarts: list[dict[str, Any]] = []
        with fit_tracking(spark, self.getMlflowLogging()) as tracking:
            if backend.name == "local":
                result = backend.run(spec)
            else:
                if self.getMaxRestarts() and spec.checkpointDir is None:  # restarted ranks resume from there
                    spec = replace(spec, checkpointDir=join(data.root, f"checkpoints-{spec.runId}"))
                result, restarts = run_with_restarts(backend, spec, cluster.context(spark), self.getMaxRestarts(),
                                                     self.getRestartTimeout(), on_epoch=tracking.epoch)
            tracking.fitted(result.history, result.bestEpoch, spec.earlyStoppingMetric, len(restarts))
        model = (self._model_class or TorchModel)._from_training(spec, result)
        model.restarts = restarts
        model.initReport = plan.initReport
        if plan.initReport and self.getVerbose():
            from sparkneural.training.transfer import format_report

            print(format_report(plan.initReport), flush=True)
        self._copyValues(model)
        return model

    def _fit(self, dataset: DataFrame) -> "TorchModel":
        plan = self._plan(dataset)
        with self._materialize(dataset, plan.summary) as data:
            return self._train(data, plan, dataset.sparkSession)

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
        info = metadata["sparkneural"]
        if info.get("pickled"):
            instance._set(architecture=cloudpickle.loads(load_factory(path, info["pickleSha256"], allowPickle)))
        return instance

    def copy(self, extra=None):
        copied = super().copy(extra)
        copied._test_hooks = tuple(self._test_hooks)
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
                    self.context = self.owner._materialize(self.dataset, self.summary)
                    self.data = self.context.__enter__()
            except BaseException:
                self.close()
                raise
        estimator = self.estimators[index]
        try:
            model = estimator._train(self.data, estimator._plan(self.dataset, self.summary), self.dataset.sparkSession)
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

    Subclasses set ``_architecture_name``, ``_task_name``, ``_model_class`` and
    ``_architecture_param_names`` (their own Params passed to the architecture).
    """

    _architecture_name = "mlp"
    _task_name = "classification"
    _architecture_param_names: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}  # shared Params whose default differs here, e.g. {"labelCol": "target"}

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._setDefault(architecture=self._architecture_name, task=self._task_name, **self._defaults)
        self._set(**params)

    def _architecture_params(self, summary: Any) -> dict[str, Any]:
        params = super()._architecture_params(summary)
        for name in self._architecture_param_names:
            params.setdefault(name, self.getOrDefault(name))
        return params


def _interactive() -> bool:
    import sys

    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


def _saved_weights(path: str) -> dict:
    """The weights of a fitted sparkneural model saved at ``path``, in the network's definition order."""
    from sparkneural.estimators.persistence import read_metadata

    try:
        metadata = read_metadata(path)
        if "weightsSha256" not in metadata["sparkneural"]:
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
    by_value = module is not None and module.__name__ != "__main__" and path and "site-packages" not in path and not module.__name__.startswith("sparkneural")
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(factory)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


TorchEstimator._model_class = TorchModel
