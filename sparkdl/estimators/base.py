"""``TorchEstimator`` and ``TorchModel``: any registered torch architecture as a Spark ML stage.

``fit`` checks the Params and the data (one aggregate, before any training
job), materialises the training columns to Parquet, runs the training loop
on the chosen backend and returns a ``TorchModel``. The model's
``transform`` runs the network in Arrow batches next to the data.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl.data.materialize import materialize
from sparkdl.data.schema import ColumnCheck, check_features_type, check_label_type, check_values, column_type
from sparkdl.estimators import inference
from sparkdl.estimators.params import BACKENDS, OPTIMIZERS, TASKS, TorchParams, add_accessors
from sparkdl.training.backends import get_backend
from sparkdl.training.loop import LOSSES
from sparkdl.training.spec import TrainSpec

DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse", "reconstruction": "mse"}


@add_accessors
class TorchEstimator(Estimator, TorchParams):
    """Train any ``sparkdl.nn`` architecture (or your own module factory) on a DataFrame.

    >>> est = TorchEstimator(architecture="mlp", architectureParams={"hiddenLayers": [32]},
    ...                      task="classification", epochs=5, numProc=2)
    >>> model = est.fit(train_df)            # features: array<float> or vector, label: 0..k-1
    >>> model.transform(test_df).select("prediction", "probability").show(3)
    """

    _model_class: type | None = None  # the Model class fit returns; set below

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
            if value is None or value <= 0:
                raise ValueError(f"{name}: expected a value > 0, found {value!r}")

        for name in ("epochs", "batchSize", "learningRate", "inferenceBatchSize"):
            positive(name)
        checks = [
            ("optimizer", OPTIMIZERS),
            ("backend", BACKENDS),
            ("task", TASKS),
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
            if self.getOrDefault(name) < 0:
                raise ValueError(f"{name}: expected a value >= 0, found {self.getOrDefault(name)}")
        for name in ("gradientClipNorm", "earlyStoppingPatience", "numProc"):
            value = self.getOrDefault(name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: expected a value > 0 or None, found {value!r}")
        if self.getResume() and not self.getCheckpointDir():
            raise ValueError("resume: expected checkpointDir to be set, found None")
        architecture = self.getArchitecture()
        if isinstance(architecture, str):
            from sparkdl.nn.registry import check_kwargs

            check_kwargs(architecture, self._architecture_params())

    def _num_proc(self, dataset: DataFrame) -> int:
        if self.getBackend() == "local":
            return 1
        cores = dataset.sparkSession.sparkContext.defaultParallelism
        requested = self.getNumProc()
        if requested is None:
            return max(1, min(cores, 2))
        if requested > cores:
            raise ValueError(
                f"numProc: expected at most {cores} (the cores Spark has for tasks), found {requested}"
            )
        return requested

    def _check_data(self, dataset: DataFrame) -> tuple[tuple[int, ...], int, int]:
        """Check schema and values; return (inputShape, outputSize, rows)."""
        task = self.getTask()
        features, label = self.getFeaturesCol(), self.getLabelCol()
        check_features_type(dataset, features)
        checks = [ColumnCheck(features, "featuresCol", is_array=True, length=self._expected_length())]
        label_is_array = False
        if task != "reconstruction":
            check_label_type(dataset, label, allow_array=(task == "regression"))
            label_type = dataset.schema[label].dataType
            label_is_array = isinstance(label_type, (T.ArrayType, VectorUDT))
            weights = self.getClassWeights()
            checks.append(
                ColumnCheck(
                    label,
                    "labelCol",
                    is_array=label_is_array,
                    num_classes=len(weights) if (task == "classification" and weights) else None,
                    integral=(task == "classification"),
                )
            )
        validation = self.getValidationCol()
        if validation is not None:
            data_type = column_type(dataset, validation, "validationCol")
            if not isinstance(data_type, (T.BooleanType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)):
                raise TypeError(f"validationCol: column {validation!r} must be boolean; found {data_type.simpleString()}")
        summary = check_values(dataset, checks, type(self).__name__)
        width = summary.lengths[features]
        shape = tuple(self.getInputShape() or [width])
        if task == "classification":
            output_size = len(self.getClassWeights() or []) or max(2, int(summary.max_label[label]) + 1)
        elif task == "regression":
            output_size = summary.lengths[label] if label_is_array else 1
        else:
            output_size = width
        return shape, output_size, summary.rows

    def _expected_length(self) -> int | None:
        shape = self.getInputShape()
        if shape is None:
            return None
        if any(d <= 0 for d in shape):
            raise ValueError(f"inputShape: expected positive dimensions, found {shape}")
        return math.prod(shape)

    def _fit(self, dataset: DataFrame) -> "TorchModel":
        self._validate_params()
        num_proc = self._num_proc(dataset)
        input_shape, output_size, rows = self._check_data(dataset)
        if rows < num_proc:
            raise ValueError(f"numProc: expected at most one rank per row ({rows} rows), found {num_proc}")
        validation = self._validation_flag()
        architecture = self.getArchitecture()
        with materialize(
            dataset,
            self.getFeaturesCol(),
            None if self.getTask() == "reconstruction" else self.getLabelCol(),
            validation,
        ) as data:
            spec = TrainSpec(
                data=data,
                architecture=architecture if isinstance(architecture, str) else _pickle_factory(architecture),
                architectureParams=self._architecture_params(),
                inputShape=input_shape,
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
                testHooks=dict(getattr(self, "_test_hooks", {})),
            )
            result = get_backend(self.getBackend(), num_proc, self.getVerbose()).run(spec)
        model_class = self._model_class or TorchModel
        model = model_class._from_training(spec, result)
        model._resetUid(model.uid)
        self._copyValues(model)
        return model

    def _validation_flag(self):
        if self.getValidationCol() is not None:
            return self.getValidationCol()
        if self.getValidationFraction() > 0:
            return F.rand(self.getSeed()) < F.lit(self.getValidationFraction())
        return None


def _pickle_factory(factory) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(factory)


@add_accessors
class TorchModel(Model, TorchParams):
    """A fitted torch network as a Spark Transformer.

    ``transform`` adds, for classification, ``prediction`` (double) and
    ``rawPrediction``/``probability`` (MLlib vectors); for regression,
    ``prediction`` (double, or array<float> for several outputs).
    """

    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[str, np.ndarray] = {}
        self.architectureSpec: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []
        self.bestEpoch: int | None = None
        self.rankDigests: list[str] = []
        self._broadcast = None

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
        return model

    @property
    def numClasses(self) -> int | None:
        spec = self.architectureSpec
        return spec["outputSize"] if spec.get("task") == "classification" else None

    def network(self):
        """A torch module holding the fitted weights, in eval mode."""
        return _build_network(self.architectureSpec, self.weights)

    # -- transform ----------------------------------------------------------------
    def _payload(self):
        if self._broadcast is None:
            from pyspark import SparkContext

            self._broadcast = SparkContext.getOrCreate().broadcast((self.architectureSpec, self.weights))
        return self._broadcast

    def _output_columns(self) -> list[tuple[str, str, Any, T.DataType]]:
        """(network output, column name, Arrow encoder, Spark type) for each added column."""
        if self.architectureSpec["task"] == "classification":
            columns = [
                ("raw", self.getRawPredictionCol(), inference.dense_vectors, VectorUDT()),
                ("probability", self.getProbabilityCol(), inference.dense_vectors, VectorUDT()),
                ("prediction", self.getPredictionCol(), inference.doubles, T.DoubleType()),
            ]
            return [c for c in columns if c[1]]
        if self.architectureSpec["outputSize"] == 1:
            return [("prediction", self.getPredictionCol(), inference.doubles, T.DoubleType())]
        return [("prediction", self.getPredictionCol(), inference.float_lists, T.ArrayType(T.FloatType()))]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        features = self.getFeaturesCol()
        check_features_type(dataset, features)
        columns = self._output_columns()
        for _, name, _, _ in columns:
            if name in dataset.columns:
                raise ValueError(f"output column {name!r} already exists in the DataFrame; choose another name")
        schema = T.StructType(dataset.schema.fields + [T.StructField(name, t, True) for _, name, _, t in columns])
        payload, key = self._payload(), f"{self.uid}-{id(self.weights)}"
        shape = tuple(self.architectureSpec["inputShape"])
        width = math.prod(shape)
        batch_size, task = self.getInferenceBatchSize(), self.architectureSpec["task"]
        outputs = [(k, name, encode) for k, name, encode, _ in columns]

        def run(batches):
            import torch
            from pyspark import TaskContext

            context = TaskContext.get()
            torch.set_num_threads(max(1, context.cpus() if context else 1))
            net = inference.cached_network(key, lambda: _build_network(*payload.value))
            return inference.predict_batches(
                batches, features=features, width=width, batch_size=batch_size,
                network=lambda x: _forward(net, x.reshape(-1, *shape), task), outputs=outputs,
            )

        return dataset.mapInArrow(run, schema)


def _build_network(spec: dict[str, Any], weights: dict[str, np.ndarray]):
    import torch

    from sparkdl.training.loop import build_network

    net = build_network(
        TrainSpec(
            data=None,  # type: ignore[arg-type]
            architecture=spec["architecture"],
            architectureParams=spec["architectureParams"],
            inputShape=tuple(spec["inputShape"]),
            outputSize=spec["outputSize"],
        )
    )
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    return net.eval()


def _forward(net, x: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """Named numpy outputs of ``net`` for one chunk of shaped inputs."""
    import torch

    with torch.inference_mode(), warnings.catch_warnings():
        # Arrow buffers are read-only; inference never writes to its input.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        out = net(torch.from_numpy(x))
        if task == "classification":
            return {
                "raw": out.numpy(),
                "probability": torch.softmax(out, dim=1).numpy(),
                "prediction": out.argmax(dim=1).numpy().astype(np.float64),
            }
        flat = out.reshape(len(x), -1)
        return {"prediction": flat[:, 0].numpy() if flat.shape[1] == 1 else flat.numpy()}


TorchEstimator._model_class = TorchModel
