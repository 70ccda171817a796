"""Every bad input gives one clear error naming the column or Param, before any training job."""

import pytest
from pyspark.sql import functions as F

from sparkdl.estimators import MLPClassifier, TorchEstimator
import sparkdl.estimators.base as base


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Any bad input must be caught before data is materialised or a backend starts."""

    def forbidden(*args, **kwargs):
        raise AssertionError("training started despite bad input")

    monkeypatch.setattr(TorchEstimator, "_materialize", forbidden)
    monkeypatch.setattr(base, "get_backend", forbidden)


@pytest.fixture(scope="module")
def good(spark):
    rows = [([float(i), float(i % 3), 1.0, 0.5], float(i % 3)) for i in range(30)]
    return spark.createDataFrame(rows, "features array<float>, label double")


def _frame(spark, rows, schema="features array<float>, label double"):
    return spark.createDataFrame(rows, schema)


BAD_DATA = {
    "missing features column": (
        lambda s, g: g.withColumnRenamed("features", "x"), ValueError, r"featuresCol: column 'features' not found.*\['x', 'label'\]"),
    "missing label column": (
        lambda s, g: g.drop("label"), ValueError, r"labelCol: column 'label' not found"),
    "features of wrong type": (
        lambda s, g: g.withColumn("features", F.lit("a")), TypeError, r"featuresCol: column 'features' must be array<float>.*found string"),
    "label of wrong type": (
        lambda s, g: g.withColumn("label", F.lit("cat")), TypeError, r"labelCol: column 'label' must be a numeric column; found string"),
    "arrays of different lengths": (
        lambda s, g: _frame(s, [([1.0, 2.0], 0.0), ([1.0], 1.0)]), ValueError, r"featuresCol column 'features': expected arrays of one length, found lengths from 1 to 2"),
    "NaN in features": (
        lambda s, g: _frame(s, [([1.0, float("nan")], 0.0), ([1.0, 2.0], 1.0)]), ValueError, r"featuresCol column 'features': expected finite values, found 1 NaN/infinite/null elements"),
    "infinity in features": (
        lambda s, g: _frame(s, [([1.0, float("inf")], 0.0), ([1.0, 2.0], 1.0)]), ValueError, r"expected finite values, found 1"),
    "null features row": (
        lambda s, g: _frame(s, [(None, 0.0), ([1.0, 2.0], 1.0)]), ValueError, r"featuresCol column 'features': expected no nulls, found 1 null rows"),
    "null label": (
        lambda s, g: _frame(s, [([1.0, 2.0], None), ([1.0, 2.0], 1.0)]), ValueError, r"labelCol column 'label': expected no nulls, found 1"),
    "NaN label": (
        lambda s, g: _frame(s, [([1.0, 2.0], float("nan")), ([1.0, 2.0], 1.0)]), ValueError, r"labelCol column 'label': expected finite values"),
    "empty DataFrame": (
        lambda s, g: g.limit(0), ValueError, r"MLPClassifier: the DataFrame is empty; expected at least one row"),
    "negative class label": (
        lambda s, g: _frame(s, [([1.0, 2.0], -1.0), ([1.0, 2.0], 1.0)]), ValueError, r"labelCol column 'label': expected class labels >= 0, found -1"),
    "non-integral class label": (
        lambda s, g: _frame(s, [([1.0, 2.0], 0.5), ([1.0, 2.0], 1.0)]), ValueError, r"labelCol column 'label': expected integral class labels, found 1 non-integral"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_rejected_before_training(spark, good, case):
    make, error, message = BAD_DATA[case]
    with pytest.raises(error, match=message):
        MLPClassifier(epochs=1, backend="local").fit(make(spark, good))


BAD_PARAMS = {
    "zero epochs": (dict(epochs=0), ValueError, r"epochs: expected a value > 0, found 0"),
    "negative batchSize": (dict(batchSize=-2), ValueError, r"batchSize: expected a value > 0, found -2"),
    "zero learningRate": (dict(learningRate=0.0), ValueError, r"learningRate: expected a value > 0, found 0.0"),
    "unknown optimizer": (dict(optimizer="adamax"), ValueError, r"optimizer: expected one of \['adam', 'adamw', 'sgd', 'rmsprop', 'adadelta'\], found 'adamax'"),
    "unknown backend": (dict(backend="mpi"), ValueError, r"backend: expected one of .*found 'mpi'"),
    "unknown loss": (dict(lossFunction="hinge"), ValueError, r"lossFunction: expected one of .*found 'hinge'"),
    "numProc above the cores": (dict(numProc=64, backend="horovod"), ValueError, r"numProc: expected at most 2 \(the cores Spark has for tasks\), found 64"),
    "inputShape of the wrong size": (dict(inputShape=[3, 3]), ValueError, r"inputShape: \[3, 3\] holds 9 values, but column 'features' has arrays of length 4"),
    "non-positive inputShape": (dict(inputShape=[0, 4]), ValueError, r"inputShape: expected positive dimensions"),
    "label above the classWeights": (dict(classWeights=[1.0, 1.0]), ValueError, r"labelCol column 'label': expected class labels in 0..1 \(classWeights has 2 entries\), found values up to 2"),
    "validationFraction of 1": (dict(validationFraction=1.0), ValueError, r"validationFraction: expected a value in \[0, 1\), found 1.0"),
    "resume without a checkpointDir": (dict(resume=True), ValueError, r"resume: expected checkpointDir to be set"),
    "unknown hidden-layer activation": (dict(activation="swish"), ValueError, r"activation: expected one of"),
    "early stopping without validation": (dict(earlyStoppingPatience=3), ValueError, r"earlyStoppingPatience: needs validation rows"),
    "unknown early-stopping metric": (dict(validationFraction=0.2, earlyStoppingMetric="val_f1"), ValueError, r"earlyStoppingMetric: expected one of \['val_loss', 'val_accuracy'\]"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_bad_params_are_rejected_before_training(good, case):
    params, error, message = BAD_PARAMS[case]
    with pytest.raises(error, match=message):
        MLPClassifier(**{"backend": "local", **params}).fit(good)


def test_unknown_architecture_lists_the_registered_names(good):
    with pytest.raises(ValueError, match=r"architecture: unknown name 'transformerxl'; expected one of \[.*'mlp'.*\]"):
        TorchEstimator(architecture="transformerxl", backend="local").fit(good)


def test_unknown_architecture_parameter_names_the_valid_ones(good):
    with pytest.raises(ValueError, match=r"architectureParams: 'mlp' takes no parameter\(s\) \['depth'\]; valid ones are"):
        TorchEstimator(architectureParams={"depth": 3}, backend="local").fit(good)


def test_wrong_param_type_names_the_param():
    with pytest.raises(TypeError, match="epochs"):
        MLPClassifier(epochs="many")
