"""Params shared by every sparkdl estimator and model, declared once with their defaults.

Follows pyspark.ml: camelCase names, a type converter and a doc string per
Param, ``setX``/``getX`` accessors, defaults set in one place.
"""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
    HasSeed,
)

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adadelta")
BACKENDS = ("horovod", "torch_distributor", "local")
TASKS = ("classification", "regression", "reconstruction", "next_step", "seq2seq")
INIT_MATCH_MODES = ("name", "order")


def _param(name: str, doc: str, converter) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=converter)


def _to_optional_float_list(value):
    return None if value is None else TypeConverters.toListFloat(value)


def _to_int_list(value):
    return TypeConverters.toListInt(value)


def _to_dict(value):
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict, found {type(value).__name__}")
    return dict(value)


def _to_optional_string(value):
    return None if value is None else TypeConverters.toString(value)


def _to_optional_float(value):
    return None if value is None else TypeConverters.toFloat(value)


def _to_optional_int(value):
    return None if value is None else TypeConverters.toInt(value)


def _to_optional_paths(value):
    """None, one path, or a list of paths."""
    if value is None or isinstance(value, str):
        return value
    return TypeConverters.toListString(value)


def _to_string_list(value):
    return [] if value is None else TypeConverters.toListString(value)


def _to_architecture(value):
    """A registry name (str) or a callable returning a torch.nn.Module."""
    if isinstance(value, str) or callable(value):
        return value
    raise TypeError(f"architecture: expected a registered name or a module factory, found {type(value).__name__}")


class TorchParams(
    HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol, HasSeed
):
    """The Params every sparkdl estimator and model has."""

    architecture = _param("architecture", "registered architecture name, or a callable returning a torch.nn.Module", _to_architecture)
    architectureParams = _param("architectureParams", "JSON-serialisable keyword arguments of the architecture", _to_dict)
    task = _param("task", f"one of {list(TASKS)}", TypeConverters.toString)
    inputShape = _param("inputShape", "shape of one example, e.g. [timesteps, features] or [channels, h, w]; the flat features are reshaped to it (default: [number of features])", _to_int_list)
    epochs = _param("epochs", "number of full passes over the training data (> 0)", TypeConverters.toInt)
    batchSize = _param("batchSize", "mini-batch size per rank (> 0)", TypeConverters.toInt)
    optimizer = _param("optimizer", f"one of {list(OPTIMIZERS)}", TypeConverters.toString)
    learningRate = _param("learningRate", "step size of the optimizer (> 0)", TypeConverters.toFloat)
    momentum = _param("momentum", "momentum of the sgd optimizer (>= 0)", TypeConverters.toFloat)
    weightDecay = _param("weightDecay", "L2 penalty applied by the optimizer (>= 0)", TypeConverters.toFloat)
    dropout = _param("dropout", "dropout probability of the architecture, in [0, 1)", TypeConverters.toFloat)
    gradientClipNorm = _param("gradientClipNorm", "clip the gradient's global L2 norm to this value (None: no clipping)", _to_optional_float)
    lossFunction = _param("lossFunction", "loss: cross_entropy, mse, l1, huber or bce (None: the task's default)", _to_optional_string)
    classWeights = _param("classWeights", "weight of each class in the cross-entropy loss (None: equal)", _to_optional_float_list)
    validationFraction = _param("validationFraction", "fraction of rows held out for validation after each epoch, in [0, 1)", TypeConverters.toFloat)
    validationCol = _param("validationCol", "boolean column marking validation rows (overrides validationFraction)", _to_optional_string)
    earlyStoppingPatience = _param("earlyStoppingPatience", "stop after this many epochs without improvement of earlyStoppingMetric (None: never)", _to_optional_int)
    earlyStoppingMetric = _param("earlyStoppingMetric", "validation metric that early stopping watches: val_loss, val_accuracy or val_rmse", TypeConverters.toString)
    numProc = _param("numProc", "number of training processes (Horovod ranks); None: Spark's default parallelism", _to_optional_int)
    backend = _param("backend", f"one of {list(BACKENDS)}", TypeConverters.toString)
    checkpointDir = _param("checkpointDir", "directory for the checkpoint written after every epoch (None: no checkpoints)", _to_optional_string)
    dataDir = _param("dataDir", "directory (path or file:// URL) for the materialised training data; sparkdl deletes only what it writes there (None: the Spark conf petastorm.spark.converter.parentCacheDirUrl, else a temporary directory)", _to_optional_string)
    resume = _param("resume", "continue from the last checkpoint in checkpointDir", TypeConverters.toBoolean)
    inferenceBatchSize = _param("inferenceBatchSize", "rows per forward pass in transform (> 0)", TypeConverters.toInt)
    initFrom = _param("initFrom", "saved sparkdl model (path, or a list of paths) whose weights initialise the network wherever they fit; None: random initialisation", _to_optional_paths)
    initFromMatch = _param("initFromMatch", "how saved tensors are paired with the network's: 'name' (same name and shape) or 'order' (definition order, each source continuing where the last stopped, up to its first shape mismatch)", TypeConverters.toString)
    initFromPrefixes = _param("initFromPrefixes", "use only saved tensors whose names start with one of these, e.g. ['encoder.', 'code.'] for an autoencoder's encoder (empty: all)", _to_string_list)
    freeze = _param("freeze", "parameter-name prefixes kept fixed during training, e.g. ['features.'] (empty: train everything)", _to_string_list)
    unfreezeAfterEpochs = _param("unfreezeAfterEpochs", "train the frozen parameters too from this many epochs on (None: they stay frozen)", _to_optional_int)
    unfrozenLearningRate = _param("unfrozenLearningRate", "learning rate of the parameters once unfrozen (None: learningRate)", _to_optional_float)
    verbose = _param("verbose", "0: quiet, 1: one line per epoch, 2: also the backend's own logs", TypeConverters.toInt)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._setDefault(
            architecture="mlp",
            architectureParams={},
            task="classification",
            inputShape=None,
            epochs=10,
            batchSize=64,
            optimizer="adam",
            learningRate=0.001,
            momentum=0.9,
            weightDecay=0.0,
            dropout=0.0,
            gradientClipNorm=None,
            lossFunction=None,
            classWeights=None,
            validationFraction=0.0,
            validationCol=None,
            earlyStoppingPatience=None,
            earlyStoppingMetric="val_loss",
            numProc=None,
            backend="horovod",
            checkpointDir=None,
            resume=False,
            dataDir=None,
            inferenceBatchSize=1024,
            verbose=1,
            seed=0,
            initFrom=None,
            initFromMatch="name",
            initFromPrefixes=[],
            freeze=[],
            unfreezeAfterEpochs=None,
            unfrozenLearningRate=None,
        )


def add_accessors(cls):
    """Give ``cls`` a ``setX``/``getX`` pair for each of its Params that lacks one."""
    for name in dir(cls):
        param = getattr(cls, name, None)
        if not isinstance(param, Param):
            continue
        suffix = name[0].upper() + name[1:]
        if not hasattr(cls, "get" + suffix):
            setattr(cls, "get" + suffix, _getter(name))
        if not hasattr(cls, "set" + suffix):
            setattr(cls, "set" + suffix, _setter(name))
    return cls


def _getter(name):
    def get(self):
        return self.getOrDefault(getattr(self, name))

    get.__name__ = f"get{name[0].upper()}{name[1:]}"
    get.__doc__ = f"Gets the value of {name} or its default value."
    return get


def _setter(name):
    def set_(self, value):
        return self._set(**{name: value})

    set_.__name__ = f"set{name[0].upper()}{name[1:]}"
    set_.__doc__ = f"Sets the value of {name}."
    return set_
