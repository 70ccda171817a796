"""Params shared by every sparkneural estimator and model, each declared once with its default.

Follows pyspark.ml: camelCase names, a type converter and a doc string per
Param, ``setX``/``getX`` accessors, defaults set in one place, explicit
keyword signatures. A declaration (``sparkneural.training.declared.Declared``)
also carries the Param's constraint, checked generically by
``check_declared``; the training Params (``sparkneural.training.spec.TRAINING``)
are also the fields of the spec that travels to the ranks.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from pyspark.ml.param import Param, Params
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
)

from sparkneural.cluster import check_resources
from sparkneural.data.filesystems import check_location, location_converter
from sparkneural.training.declared import (
    Declared,
    Interval,
    Options,
    optional,
    to_bool,
    to_dict,
    to_float,
    to_float_list,
    to_int,
    to_int_list,
    to_paths,
    to_string,
    to_string_list,
)
from sparkneural.training.spec import NON_NEGATIVE, POSITIVE, POSITIVE_OR_NONE, TRAINING, _names


def _to_architecture(value):
    """A registry name (str) or a callable returning a torch.nn.Module."""
    if isinstance(value, str) or callable(value):
        return value
    raise TypeError(f"architecture: expected a registered name or a module factory, found {type(value).__name__}")


def _check_thresholds(name: str, value: list[float] | None) -> None:
    if value is None:
        return
    if not all(0 <= t < float("inf") for t in value) or sum(t == 0 for t in value) > 1:
        raise ValueError(f"{name}: expected finite values >= 0 with at most one zero, found {value}")


ESTIMATOR = (
    Declared("architecture", "registered architecture name, or a callable returning a torch.nn.Module", _to_architecture, "mlp"),
    Declared("architectureParams", "JSON-serialisable keyword arguments of the architecture", to_dict, {}),
    Declared("task", "classification, regression, reconstruction, next_step or seq2seq", to_string, "classification",
             Options(source=_names("sparkneural.training.tasks", "TASKS"))),
    Declared("inputShape", "shape of one example, e.g. [timesteps, features] or [channels, h, w]; the flat features are reshaped to it (default: [number of features])", optional(to_int_list), None),
    Declared("dropout", "dropout probability of the architecture, in [0, 1)", to_float, 0.0, Interval(0, 1)),
    Declared("validationFraction", "fraction of rows held out for validation after each epoch, in [0, 1)", to_float, 0.0, Interval(0, 1)),
    Declared("validationCol", "boolean column marking validation rows (overrides validationFraction)", optional(to_string), None),
    Declared("numProc", "number of training processes (Horovod ranks); None: Spark's default parallelism", optional(to_int), None, POSITIVE_OR_NONE),
    Declared("backend", "auto (horovod when horovod.torch imports, else torch_distributor), horovod, torch_distributor or local", to_string, "auto",
             Options(source=_names("sparkneural.training.backends", "BACKENDS"))),
    Declared("maxRestarts", "how many times a fit starts its ranks again when one is lost (its process, Python worker or executor "
             "went away), each time resuming from the last epoch's checkpoint (in checkpointDir, or a temporary one beside the "
             "training data); an exception raised by the training code is never retried (0: fail at once)", to_int, 2, NON_NEGATIVE),
    Declared("restartTimeout", "seconds a restart waits for Spark to offer the ranks' task slots again before the fit fails (> 0)",
             to_float, 300.0, POSITIVE),
    Declared("dataDir", "directory for the materialised training data, on any file system pyarrow opens: a path (taken literally), "
             "file://, hdfs://, s3:// (or s3a://), gs://, abfs(s):// or dbfs:/ (in a URI, '%' escapes are decoded, '?' starts pyarrow's "
             "options and '#' is refused); no credentials in it, as it is saved with the model: they come from the environment "
             "(AWS_ACCESS_KEY_ID ...) or the instance; executors write there and every rank reads from there, so on a cluster it must "
             "be a file system all of them reach; a fit writes a new sparkneural-<32 hex digits> directory there and deletes only that "
             "(None: the Spark conf spark.sparkneural.dataDir, else petastorm.spark.converter.parentCacheDirUrl, else "
             "<spark.local.dir or the temporary directory>/sparkneural-<uid>, private to the user (mode 0700; refused if another user "
             "owns it or may enter it), which serves local mode only)", location_converter("dataDir"), None, check_location),
    Declared("inferenceBatchSize", "rows per forward pass in transform (> 0); None: chosen per model and device, from the "
             "network's activations per row (on a CPU, chunks whose largest activation stays near 2 MiB, at most 512 rows; on a GPU, a quarter "
             "of its free memory, at most 65536 rows), never more than one Arrow batch (spark.sql.execution.arrow.maxRecordsPerBatch); "
             "the model's log says what it chose at debug level; Seq2SeqModel decodes 1024 sources at a time", optional(to_int), None, POSITIVE_OR_NONE),
    Declared("trainingResources", "what each training rank's task asks Spark for, {'cpus': an integer >= 1 (also the rank's "
             "torch threads), 'gpus': a number > 0, whole or at most 0.5}, as a stage-level ResourceProfile of the fit's barrier "
             "stage (set numProc with it); needs Spark 4 (pyspark 3.5's mapInArrow takes no profile) and a cluster manager with "
             "stage-level scheduling (standalone, YARN or Kubernetes; with dynamic allocation off, executors must already offer "
             "the resource); not with backend='local' (None: the application's task resources, spark.task.cpus and "
             "spark.task.resource.gpu.amount)", optional(to_dict), None, check_resources),
    Declared("inferenceResources", "what each scoring task of transform asks Spark for, {'cpus': an integer >= 1, 'gpus': "
             "a number > 0, whole or at most 0.5}, as a stage-level ResourceProfile of the scoring stage, e.g. {'gpus': 1} scores "
             "on GPU executors while the other stages ask for none; needs Spark 4 (pyspark 3.5's mapInArrow takes no profile) "
             "and a cluster manager with stage-level scheduling (standalone, YARN or Kubernetes; with dynamic allocation off, "
             "executors must already offer the resource) (None: the application's task resources)",
             optional(to_dict), None, check_resources),
    Declared("initFrom", "saved sparkneural model (path, or a list of paths) whose weights initialise the network wherever they fit; None: random initialisation", to_paths, None),
    Declared("initFromMatch", "how saved tensors are paired with the network's: 'name' (same name and shape) or 'order' (definition order, each source continuing where the last stopped, up to its first shape mismatch)", to_string, "name", Options(("name", "order"))),
    Declared("initFromPrefixes", "use only saved tensors whose names start with one of these, e.g. ['encoder.', 'code.'] for an autoencoder's encoder (empty: all)", to_string_list, []),
    Declared("mlflowLogging", "log the fit to the MLflow run active in the thread calling fit (one mlflow.start_run() opened, or "
             "mlflow.pyspark.ml.autolog()'s), from the driver: each epoch's history metrics (loss, val_loss, ... and seconds) at "
             "step=epoch as they reach it, best_epoch and best_<earlyStoppingMetric> when validating, and restarts; nothing "
             "without an active run (False, or the Spark conf spark.sparkneural.mlflow.enabled=false: never)", to_bool, True),
    Declared("thresholds", "classifiers: the class with the largest probability / threshold is predicted, a class with threshold 0 always (MLlib's meaning); one value per class (None: the most probable class)", optional(to_float_list), None, _check_thresholds),
)


def declare(*declarations: Declared) -> Callable[[type], type]:
    """Class decorator: each declaration becomes a pyspark ``Param`` class attribute.

    Defaults are set by ``declared_defaults`` when an instance is made.
    """

    def add(cls: type) -> type:
        for d in declarations:
            setattr(cls, d.name, d.param())
        cls._declarations = declarations
        return cls

    return add


def declarations(cls: type) -> dict[str, Declared]:
    """The declarations of ``cls`` and its bases by name; a subclass's own win."""
    found: dict[str, Declared] = {}
    for klass in reversed(cls.__mro__):
        found.update((d.name, d) for d in vars(klass).get("_declarations", ()))
    return found


def declared_defaults(instance: Params, cls: type) -> None:
    """Set the defaults of the Params declared on ``cls`` (call it from ``cls.__init__``)."""
    instance._setDefault(**{d.name: d.default for d in vars(cls)["_declarations"]})


def check_declared(instance: Params) -> None:
    """Check every declared Param of ``instance`` against its constraint."""
    for d in declarations(type(instance)).values():
        if d.check is not None:
            d.check(d.name, instance.getOrDefault(d.name))


@declare(*TRAINING, *ESTIMATOR)
class TorchParams(HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol):
    """The Params every sparkneural estimator and model has."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        declared_defaults(self, TorchParams)


def add_accessors(cls: type) -> type:
    """Give ``cls`` a ``setX``/``getX`` pair for each of its Params that lacks one."""
    inherited = {n for klass in cls.__mro__ for n in vars(klass)}
    for name in param_names(cls):
        suffix = name[0].upper() + name[1:]
        if "get" + suffix not in inherited:
            setattr(cls, "get" + suffix, _getter(name))
        if "set" + suffix not in inherited:
            setattr(cls, "set" + suffix, _setter(name))
    return cls


def stage(cls: type) -> type:
    """Finish a stage class: ``setX``/``getX`` for each Param, and explicit keyword signatures.

    ``__init__`` and ``setParams`` take every Param as a keyword with its
    default, so ``help(cls)``, ``inspect.signature`` and notebooks show
    them; an unknown keyword is a TypeError naming it.
    """
    add_accessors(cls)
    parent_init = cls.__init__

    def __init__(self, **params: Any) -> None:
        _reject_unknown(type(self), params)
        parent_init(self, **params)

    def setParams(self, **params: Any):
        """Sets Params by keyword."""
        _reject_unknown(type(self), params)
        return self._set(**params)

    signature = keyword_signature(cls)
    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__doc__ = f"A {cls.__name__}; every Param is a keyword argument with its default."
    setParams.__signature__ = signature  # type: ignore[attr-defined]
    cls.__init__, cls.setParams = __init__, setParams
    return cls


def param_names(cls: type) -> list[str]:
    return sorted(n for n in dir(cls) if isinstance(getattr(cls, n, None), Param))


def keyword_signature(cls: type) -> inspect.Signature:
    """``(self, *, name=default, ...)`` for every Param of ``cls``, alphabetically."""
    defaults = {p.name: v for p, v in cls()._defaultParamMap.items()}  # a bare instance needs no Spark
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(n)) for n in param_names(cls)]
    return inspect.Signature(parameters)


def _reject_unknown(cls: type, params: dict[str, Any]) -> None:
    unknown = sorted(set(params) - set(param_names(cls)))
    if unknown:
        raise TypeError(f"{cls.__name__}: unexpected keyword argument(s) {unknown}; help({cls.__name__}) lists its Params")


def _getter(name: str):
    def get(self):
        return self.getOrDefault(getattr(self, name))

    get.__name__ = f"get{name[0].upper()}{name[1:]}"
    get.__doc__ = f"Gets the value of {name} or its default value."
    return get


def _setter(name: str):
    def set_(self, value):
        return self._set(**{name: value})

    set_.__name__ = f"set{name[0].upper()}{name[1:]}"
    set_.__doc__ = f"Sets the value of {name}."
    return set_


__all__ = ["TorchParams", "add_accessors", "check_declared", "declarations", "declare", "declared_defaults", "stage"]
