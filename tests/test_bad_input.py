"""Every bad input gives one clear error naming the column, Param, file or key, and what was expected.

Estimators are fitted with training forbidden: ``fit`` may run its one
validation aggregate, but materialising the data or starting a backend fails
the test. Fitted models get inputs they cannot score; the transformers, the
baselines, ``read_wav`` and ``load_conf`` get bad columns, Params and files;
saved models get damaged files, and the files of earlier saves must stay as
they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import struct
import uuid
import wave

import numpy as np
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import SparkRuntimeException
from pyspark.errors.exceptions.captured import PythonException
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from sparkneural.baselines import CenteredPCA, CenteredPCAModel, clustering_scores, kmeans, mllib_mlp_baseline
from sparkneural.config import ConfigError, load_conf
from sparkneural.data import read_wav, write_wav
from sparkneural.estimators import (
    Autoencoder,
    CNNClassifier,
    CNNRegressor,
    MLPClassifier,
    MLPRegressor,
    RNNClassifier,
    RNNRegressor,
    TorchEstimator,
    TorchModel,
    TransformerClassifier,
    TransformerRegressor,
    WaveNet,
)
from sparkneural.preprocessing import MuLawDecoder, MuLawEncoder, SequenceWindower
from sparkneural.text import BertEmbeddings

# A check made in the JVM (raise_error) fails the job with Py4JJavaError on Spark 3.5, SparkRuntimeException on Spark 4.
JOB_FAILED = (Py4JJavaError, SparkRuntimeException)

QUIET = dict(backend="local", epochs=1, verbose=0)


def _merged(defaults: dict, **params):
    return {**defaults, **QUIET, **params}


# name -> (estimator from Params, kind of label: "class", "value" or None); features hold 4 values,
# WaveNet's hold windows of 8 mu-law classes (mu = 7).
ESTIMATORS = {
    "MLPClassifier": (lambda **p: MLPClassifier(**_merged(dict(hiddenLayers=[4]), **p)), "class"),
    "MLPRegressor": (lambda **p: MLPRegressor(**_merged(dict(hiddenLayers=[4]), **p)), "value"),
    "CNNClassifier": (lambda **p: CNNClassifier(**_merged(dict(inputShape=[1, 4], filters=[2], kernelSize=3, denseUnits=4), **p)), "class"),
    "CNNRegressor": (lambda **p: CNNRegressor(**_merged(dict(inputShape=[1, 2, 2], filters=[2], kernelSize=3, denseUnits=4), **p)), "value"),
    "RNNClassifier": (lambda **p: RNNClassifier(**_merged(dict(inputShape=[2, 2], hiddenSize=4), **p)), "class"),
    "RNNRegressor": (lambda **p: RNNRegressor(**_merged(dict(inputShape=[2, 2], hiddenSize=4), **p)), "value"),
    "TransformerClassifier": (lambda **p: TransformerClassifier(**_merged(dict(inputShape=[2, 2], dModel=4, numHeads=2, numLayers=1, feedForward=8), **p)), "class"),
    "TransformerRegressor": (lambda **p: TransformerRegressor(**_merged(dict(inputShape=[2, 2], dModel=4, numHeads=2, numLayers=1, feedForward=8), **p)), "value"),
    "Autoencoder": (lambda **p: Autoencoder(**_merged(dict(bottleneck=2), **p)), None),
    "WaveNet": (lambda **p: WaveNet(**_merged(dict(mu=7, layersPerBlock=2, blocks=1, residualChannels=4, dilationChannels=4, skipChannels=4), **p)), None),
    "TorchEstimator": (lambda **p: TorchEstimator(**_merged(dict(architectureParams={"hiddenLayers": [4]}), **p)), "class"),
}
LABELLED = [n for n, (_, label) in ESTIMATORS.items() if label]
CLASSIFIERS = [n for n, (_, label) in ESTIMATORS.items() if label == "class"]
REGRESSORS = [n for n, (_, label) in ESTIMATORS.items() if label == "value"]
WIDTH = {"WaveNet": 8}  # array length of the good frames (4 elsewhere)


def _with_subclasses(cls):
    yield cls
    for sub in cls.__subclasses__():
        yield from _with_subclasses(sub)


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Any bad input must be caught before data is materialised or a backend starts."""
    from sparkneural.training.backends import BACKENDS

    writing = importlib.import_module("sparkneural.data.materialize")  # the module; ``sparkneural.data.materialize`` is its function

    def forbidden(*args, **kwargs):
        raise AssertionError("training started despite bad input")

    for estimator in _with_subclasses(TorchEstimator):
        if "_materialize" in vars(estimator):
            monkeypatch.setattr(estimator, "_materialize", forbidden)
    # Below the estimators: the Spark job that writes the training data (every caller of
    # ``materialize`` builds its task function first), and every backend.
    monkeypatch.setattr(writing, "_partition_writer", forbidden)
    for backend in filter(None, BACKENDS.values()):
        monkeypatch.setattr(backend, "run", forbidden)


@pytest.fixture(scope="module")
def frames(spark):
    """A good frame per kind of input, cached: features of 4 values in [0, 1], or windows of classes."""
    rows = range(12)
    made = {
        "class": spark.createDataFrame([([i / 12, (i % 3) / 2, 1.0, 0.5], float(i % 3)) for i in rows], "features array<float>, label double"),
        "value": spark.createDataFrame([([i / 12, (i % 3) / 2, 1.0, 0.5], i / 12) for i in rows], "features array<float>, label double"),
        None: spark.createDataFrame([([i / 12, (i % 3) / 2, 1.0, 0.5],) for i in rows], "features array<float>"),
        "classes": spark.createDataFrame([([(i + j) % 8 for j in range(8)],) for i in range(6)], "features array<int>"),
    }
    # One partition each: every validation aggregate is then a single small task.
    made = {kind: frame.coalesce(1).cache() for kind, frame in made.items()}
    for frame in made.values():
        frame.count()
    return made


def _good(frames, name):
    return frames["classes" if name == "WaveNet" else ESTIMATORS[name][1]]


def _one_bad_row(good, **columns):
    """``good`` plus a copy of its first row with ``columns`` replaced (cast to the column's type)."""
    exprs = [(columns[c].cast(good.schema[c].dataType) if c in columns else F.col(c)).alias(c) for c in good.columns]
    return good.unionByName(good.limit(1).select(*exprs))


def _set_first(value):
    """The features array with its first element replaced by ``value``."""
    return F.transform("features", lambda x, i: F.when(i == 0, F.lit(value)).otherwise(x))


def _as_doubles(good):
    return good.withColumn("features", F.col("features").cast("array<double>"))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_good_input_reaches_training(frames, name):
    """The control: each good frame passes every check, so the cases below fail for their bad input alone."""
    make, _ = ESTIMATORS[name]
    with pytest.raises(AssertionError, match="training started"):
        make().fit(_good(frames, name))


# -- bad data -------------------------------------------------------------------------
# case -> (estimators it applies to, bad frame from the good one, error, message; {name} and {width} filled in)
FEATURES = "{name}: invalid input data: featuresCol column 'features'"
BAD_DATA = {
    "missing features column": (
        list(ESTIMATORS), lambda g: g.withColumnRenamed("features", "x"), ValueError,
        r"featuresCol: column 'features' not found; the DataFrame has columns \['x'"),
    "features of wrong type": (
        list(ESTIMATORS), lambda g: g.withColumn("features", F.lit("a")), TypeError,
        r"featuresCol: column 'features' must be .*; found string"),
    "features as an array of strings": (
        list(ESTIMATORS), lambda g: g.withColumn("features", F.array(F.lit("a"))), TypeError,
        r"featuresCol: column 'features' must be .*; found array<string>"),
    "arrays of different lengths": (
        list(ESTIMATORS), lambda g: _one_bad_row(g, features=F.slice("features", 2, 100)), ValueError,
        FEATURES + r": expected arrays of one length, found lengths from {short} to {width}"),
    "empty arrays": (
        list(ESTIMATORS), lambda g: g.withColumn("features", F.array().cast(g.schema["features"].dataType)), ValueError,
        FEATURES + r": expected non-empty arrays, found only empty ones"),
    "NaN in features": (
        list(ESTIMATORS), lambda g: _one_bad_row(_as_doubles(g), features=_set_first(float("nan"))), ValueError,
        FEATURES + r": expected finite values, found 1 NaN/infinite/null elements"),
    "infinity in features": (
        list(ESTIMATORS), lambda g: _one_bad_row(_as_doubles(g), features=_set_first(float("-inf"))), ValueError,
        FEATURES + r": expected finite values, found 1 NaN/infinite/null elements"),
    "null element in features": (
        list(ESTIMATORS), lambda g: _one_bad_row(g, features=_set_first(None)), ValueError,
        FEATURES + r": expected finite values, found 1 NaN/infinite/null elements"),
    "null features row": (
        list(ESTIMATORS), lambda g: _one_bad_row(g, features=F.lit(None)), ValueError,
        FEATURES + r": expected no nulls, found 1 null rows"),
    "empty DataFrame": (
        list(ESTIMATORS), lambda g: g.limit(0), ValueError,
        r"{name}: the DataFrame is empty; expected at least one row"),
    "missing label column": (
        LABELLED, lambda g: g.drop("label"), ValueError,
        r"labelCol: column 'label' not found; the DataFrame has columns \['features'\]"),
    "label of wrong type": (
        LABELLED, lambda g: g.withColumn("label", F.lit("cat")), TypeError,
        r"labelCol: column 'label' must be a numeric column.*; found string"),
    "null label": (
        LABELLED, lambda g: _one_bad_row(g, label=F.lit(None)), ValueError,
        r"{name}: invalid input data: labelCol column 'label': expected no nulls, found 1 null rows"),
    "NaN label": (
        LABELLED, lambda g: _one_bad_row(g, label=F.lit(float("nan"))), ValueError,
        r"labelCol column 'label': expected finite values, found 1 NaN/infinite/null rows"),
    "negative class label": (
        CLASSIFIERS, lambda g: _one_bad_row(g, label=F.lit(-1.0)), ValueError,
        r"labelCol column 'label': expected class labels >= 0, found -1"),
    "non-integral class label": (
        CLASSIFIERS, lambda g: _one_bad_row(g, label=F.lit(0.5)), ValueError,
        r"labelCol column 'label': expected integral class labels, found 1 non-integral values"),
    "array labels of different lengths": (
        REGRESSORS, lambda g: g.withColumn("label", F.array_repeat("label", (F.col("label") > 0.5).cast("int") + 1)), ValueError,
        r"{name}: invalid input data: labelCol column 'label': expected arrays of one length, found lengths from 1 to 2"),
    "class above mu": (
        ["WaveNet"], lambda g: _one_bad_row(g, features=_set_first(8)), ValueError,
        r"featuresCol column 'features': expected mu-law classes in 0..7, found values from 0 to 8"),
    "negative class": (
        ["WaveNet"], lambda g: _one_bad_row(g, features=_set_first(-1)), ValueError,
        r"featuresCol column 'features': expected mu-law classes in 0..7, found values from -1 to 7"),
    "non-integral classes": (
        ["WaveNet"], lambda g: _one_bad_row(_as_doubles(g), features=_set_first(2.5)), ValueError,
        r"featuresCol column 'features': expected integer mu-law classes, found 1 non-integral values"),
    "vector features": (
        ["WaveNet"], lambda g: g.sparkSession.createDataFrame([(Vectors.dense([1.0, 2.0]),)], ["features"]), TypeError,
        r"featuresCol: column 'features' must be an array of mu-law classes \(array<int>\); found vector"),
    "windows of one class": (
        ["WaveNet"], lambda g: g.withColumn("features", F.slice("features", 1, 1)), ValueError,
        r"featuresCol column 'features': expected windows of at least 2 classes, found 1"),
}
DATA_CASES = [pytest.param(name, case, id=f"{name}-{case}") for case, (names, *_) in BAD_DATA.items() for name in names]


@pytest.mark.parametrize("name, case", DATA_CASES)
def test_bad_data_is_rejected_before_training(frames, name, case):
    _, build, error, message = BAD_DATA[case]
    width = WIDTH.get(name, 4)
    make, _ = ESTIMATORS[name]
    with pytest.raises(error, match=message.format(name=name, width=width, short=width - 1)):
        make().fit(build(_good(frames, name)))


# -- bad Params -------------------------------------------------------------------------
# case -> (estimators, Params, frame from the good one (None: the good one), error, message)
ALL = list(ESTIMATORS)
FLAT = ["MLPClassifier", "MLPRegressor", "Autoencoder", "TorchEstimator"]  # inputShape defaults to [4]
SEQUENCES = ["RNNClassifier", "RNNRegressor", "TransformerClassifier", "TransformerRegressor"]
CNNS = ["CNNClassifier", "CNNRegressor"]
with_condition = lambda g: g.withColumn("speaker", (F.col("features")[0] % 2).cast("int"))  # noqa: E731
BAD_PARAMS = {
    "zero epochs": (ALL, dict(epochs=0), None, ValueError, r"epochs: expected a value > 0, found 0"),
    "negative batchSize": (ALL, dict(batchSize=-2), None, ValueError, r"batchSize: expected a value > 0, found -2"),
    "zero learningRate": (ALL, dict(learningRate=0.0), None, ValueError, r"learningRate: expected a value > 0, found 0.0"),
    "negative learningRate": (ALL, dict(learningRate=-0.1), None, ValueError, r"learningRate: expected a value > 0, found -0.1"),
    "zero inferenceBatchSize": (ALL, dict(inferenceBatchSize=0), None, ValueError, r"inferenceBatchSize: expected a value > 0 or None, found 0"),
    "zero numProc": (ALL, dict(numProc=0), None, ValueError, r"numProc: expected a value > 0 or None, found 0"),
    "negative numProc": (ALL, dict(numProc=-1), None, ValueError, r"numProc: expected a value > 0 or None, found -1"),
    "numProc above the cores": (ALL, dict(numProc=64, backend="horovod"), None, ValueError, r"numProc: expected at most 2 \(the cores Spark has for tasks\), found 64"),
    "negative weightDecay": (ALL, dict(weightDecay=-1.0), None, ValueError, r"weightDecay: expected a value >= 0, found -1.0"),
    "negative momentum": (ALL, dict(momentum=-0.5), None, ValueError, r"momentum: expected a value >= 0, found -0.5"),
    "dropout of 1": (ALL, dict(dropout=1.0), None, ValueError, r"dropout: expected a value in \[0, 1\), found 1.0"),
    "zero gradientClipNorm": (ALL, dict(gradientClipNorm=0.0), None, ValueError, r"gradientClipNorm: expected a value > 0 or None, found 0.0"),
    "validationFraction of 1": (ALL, dict(validationFraction=1.0), None, ValueError, r"validationFraction: expected a value in \[0, 1\), found 1.0"),
    "negative validationFraction": (ALL, dict(validationFraction=-0.1), None, ValueError, r"validationFraction: expected a value in \[0, 1\), found -0.1"),
    "zero earlyStoppingPatience": (ALL, dict(earlyStoppingPatience=0, validationFraction=0.2), None, ValueError, r"earlyStoppingPatience: expected a value > 0 or None, found 0"),
    "early stopping without validation": (ALL, dict(earlyStoppingPatience=3), None, ValueError, r"earlyStoppingPatience: needs validation rows; set validationFraction or validationCol"),
    "unknown earlyStoppingMetric": (ALL, dict(validationFraction=0.2, earlyStoppingMetric="val_f1"), None, ValueError, r"earlyStoppingMetric: expected one of \['val_loss', 'val_(accuracy|rmse)'\] for task '\w+', found 'val_f1'"),
    "unknown optimizer": (ALL, dict(optimizer="adamax"), None, ValueError, r"optimizer: expected one of \['adam', 'adamw', 'sgd', 'rmsprop', 'adadelta'\], found 'adamax'"),
    "unknown backend": (ALL, dict(backend="mpi"), None, ValueError, r"backend: expected one of \['auto', 'horovod', 'torch_distributor', 'local'\], found 'mpi'"),
    "unknown lossFunction": (ALL, dict(lossFunction="hinge"), None, ValueError, r"lossFunction: expected one of \[.*'mse'.*\], found 'hinge'"),
    "resume without a checkpointDir": (ALL, dict(resume=True), None, ValueError, r"resume: expected checkpointDir to be set, found None"),
    "validationCol not found": (ALL, dict(validationCol="isValidation"), None, ValueError, r"validationCol: column 'isValidation' not found; the DataFrame has columns"),
    "validationCol of wrong type": (ALL, dict(validationCol="isValidation"), lambda g: g.withColumn("isValidation", F.lit("yes")), TypeError, r"validationCol: column 'isValidation' must be boolean; found string"),
    "epochs of wrong type": (ALL, dict(epochs="many"), None, TypeError, r"epochs"),
    # inputShape that does not hold the features
    "inputShape of the wrong size": (FLAT, dict(inputShape=[3, 3]), None, ValueError, r"inputShape: \[3, 3\] holds 9 values, but column 'features' has arrays of length 4"),
    "inputShape of the wrong size (sequence)": (SEQUENCES, dict(inputShape=[3, 2]), None, ValueError, r"inputShape: \[3, 2\] holds 6 values, but column 'features' has arrays of length 4"),
    "inputShape of the wrong size (signal)": (CNNS, dict(inputShape=[1, 3]), None, ValueError, r"inputShape: \[1, 3\] holds 3 values, but column 'features' has arrays of length 4"),
    "inputShape of the wrong size (image)": (CNNS, dict(inputShape=[1, 3, 3]), None, ValueError, r"inputShape: \[1, 3, 3\] holds 9 values, but column 'features' has arrays of length 4"),
    "non-positive inputShape": (FLAT + SEQUENCES + CNNS, dict(inputShape=[0, 4]), None, ValueError, r"inputShape: expected positive dimensions, found \[0, 4\]"),
    "inputShape without timesteps": (["RNNClassifier", "RNNRegressor"], dict(inputShape=[4]), None, ValueError, r"inputShape: expected \[timesteps, features\], found \[4\]"),
    "inputShape of an unknown layout": (CNNS, dict(inputShape=[4]), None, ValueError, r"inputShape: expected \[channels, h, w\] \(images\) or \[channels, length\] \(signals\), found \[4\]"),
    "inputShape other than the windows": (["WaveNet"], dict(inputShape=[3]), None, ValueError, r"inputShape: WaveNet reads it from the windows; expected None or \[8\], found \[3\]"),
    # labels out of range
    "class label above the classWeights": (CLASSIFIERS, dict(classWeights=[1.0, 1.0]), None, ValueError, r"labelCol column 'label': expected class labels in 0..1 \(classWeights has 2 entries\), found values up to 2"),
    "returnSequences with a scalar label": (["RNNRegressor"], dict(returnSequences=True), None, ValueError, r"labelCol column 'label': with returnSequences the label must be an array with a multiple of 2 values"),
    "returnSequences for a classifier": (["RNNClassifier"], dict(returnSequences=True), None, ValueError, r"returnSequences: RNNClassifier classifies whole sequences; expected False, found True"),
    # architecture Params: zero or negative sizes, unknown names
    "zero hidden width": (["MLPClassifier", "MLPRegressor"], dict(hiddenLayers=[4, 0]), None, ValueError, r"hiddenLayers: expected positive widths, found \[4, 0\]"),
    "unknown activation": (["MLPClassifier", "MLPRegressor"], dict(activation="swish"), None, ValueError, r"activation: expected one of \['gelu', 'relu', 'sigmoid', 'tanh'\], found 'swish'"),
    "unknown blockType": (["MLPClassifier", "MLPRegressor"], dict(blockType="wide"), None, ValueError, r"blockType: expected one of \['plain', 'residual', 'highway', 'dense'\], found 'wide'"),
    "zero filters": (CNNS, dict(filters=[0]), None, ValueError, r"filters: expected a non-empty list of positive integers, found \[0\]"),
    "zero kernelSize": (CNNS, dict(kernelSize=0), None, ValueError, r"kernelSize: expected a positive integer, found 0"),
    "negative denseUnits": (CNNS, dict(denseUnits=-1), None, ValueError, r"denseUnits: expected a (non-negative|positive) integer.*, found -1"),
    "unknown padding": (CNNS, dict(padding="full"), None, ValueError, r"padding: expected one of \['same', 'valid'(, 'causal')?\], found 'full'"),
    "zero stride": (["CNNClassifier"], dict(stride=0), None, ValueError, r"stride: expected a positive integer, found 0"),
    "zero dilation": (["CNNClassifier"], dict(dilation=0), None, ValueError, r"dilation: expected a non-empty list of positive integers, found \[0\]"),
    "zero poolSize": (["CNNRegressor"], dict(poolSize=0), None, ValueError, r"poolSize: expected a positive integer, found 0"),
    "zero hiddenSize": (["RNNClassifier", "RNNRegressor"], dict(hiddenSize=0), None, ValueError, r"hiddenSize: expected a positive integer, found 0"),
    "zero recurrent layers": (["RNNClassifier", "RNNRegressor"], dict(numLayers=0), None, ValueError, r"numLayers: expected a positive integer, found 0"),
    "unknown cell": (["RNNClassifier", "RNNRegressor"], dict(cell="lstm2"), None, ValueError, r"cell: expected one of \['lstm', 'gru', 'rnn', 'peephole_lstm'\], found 'lstm2'"),
    "zero attention heads": (["TransformerClassifier", "TransformerRegressor"], dict(numHeads=0), None, ValueError, r"numHeads: expected a positive integer, found 0"),
    "dModel not a multiple of numHeads": (["TransformerClassifier", "TransformerRegressor"], dict(dModel=5), None, ValueError, r"dModel: expected a multiple of numHeads=2, found 5"),
    "unknown sequence pooling": (["TransformerClassifier", "TransformerRegressor"], dict(pooling="max"), None, ValueError, r"pooling: expected one of \[.*'mean'.*\], found 'max'"),
    "unknown position encoding": (["TransformerClassifier", "TransformerRegressor"], dict(positional="rotary"), None, ValueError, r"positional: expected one of \[.*'sinusoidal'.*\], found 'rotary'"),
    "unknown autoencoder kind": (["Autoencoder"], dict(kind="deepest"), None, ValueError, r"kind: expected one of \['dense', 'deep', 'conv', 'denoising', 'variational', 'sparse'\], found 'deepest'"),
    "zero bottleneck": (["Autoencoder"], dict(bottleneck=0), None, ValueError, r"bottleneck: expected a positive integer, found 0"),
    "unknown outputActivation": (["Autoencoder"], dict(outputActivation="relu"), None, ValueError, r"outputActivation: expected one of \['sigmoid', 'linear'\], found 'relu'"),
    "negative noiseStd": (["Autoencoder"], dict(kind="denoising", noiseStd=-1.0), None, ValueError, r"noiseStd: expected a non-negative number, found -1.0"),
    "negative sparsityWeight": (["Autoencoder"], dict(kind="sparse", sparsityWeight=-1.0), None, ValueError, r"sparsityWeight: expected a non-negative number, found -1.0"),
    "negative klWeight": (["Autoencoder"], dict(kind="variational", klWeight=-1.0), None, ValueError, r"klWeight: expected a non-negative number, found -1.0"),
    "anomalyQuantile of 1": (["Autoencoder"], dict(anomalyQuantile=1.0), None, ValueError, r"anomalyQuantile: expected a value in \(0, 1\) or None, found 1.0"),
    "zero encoder width": (["Autoencoder"], dict(kind="deep", hiddenLayers=[0]), None, ValueError, r"hiddenLayers: expected a non-empty list of positive integers, found \[0\]"),
    "conv kind without an image shape": (["Autoencoder"], dict(kind="conv"), None, ValueError, r"inputShape: kind 'conv' expects \[channels, h, w\], found \[4\]"),
    "zero mu": (["WaveNet"], dict(mu=0), None, ValueError, r"mu: expected a value >= 1, found 0"),
    "negative mu": (["WaveNet"], dict(mu=-255), None, ValueError, r"mu: expected a value >= 1, found -255"),
    "zero layersPerBlock": (["WaveNet"], dict(layersPerBlock=0), None, ValueError, r"layersPerBlock: expected an integer >= 1, found 0"),
    "zero blocks": (["WaveNet"], dict(blocks=0), None, ValueError, r"blocks: expected an integer >= 1, found 0"),
    "kernelSize of 1": (["WaveNet"], dict(kernelSize=1), None, ValueError, r"kernelSize: expected an integer >= 2, found 1"),
    "zero residualChannels": (["WaveNet"], dict(residualChannels=0), None, ValueError, r"residualChannels: expected an integer >= 1, found 0"),
    "zero dilationChannels": (["WaveNet"], dict(dilationChannels=0), None, ValueError, r"dilationChannels: expected an integer >= 1, found 0"),
    "zero skipChannels": (["WaveNet"], dict(skipChannels=0), None, ValueError, r"skipChannels: expected an integer >= 1, found 0"),
    "zero numConditions": (["WaveNet"], dict(conditionCol="speaker", numConditions=0), with_condition, ValueError, r"numConditions: expected a value >= 1 or None, found 0"),
    "conditionCol not found": (["WaveNet"], dict(conditionCol="speaker"), None, ValueError, r"conditionCol: column 'speaker' not found; the DataFrame has columns \['features'\]"),
    "conditionCol of wrong type": (["WaveNet"], dict(conditionCol="speaker"), lambda g: g.withColumn("speaker", F.lit("ann")), TypeError, r"conditionCol: column 'speaker' must be an integer column; found string"),
    "condition id above numConditions": (["WaveNet"], dict(conditionCol="speaker", numConditions=1), with_condition, ValueError, r"conditionCol column 'speaker': expected ids in 0..0 with no nulls, found values from 0 to 1"),
    "unknown architecture": (["TorchEstimator"], dict(architecture="transformerxl"), None, ValueError, r"architecture: unknown name 'transformerxl'; expected one of \[.*'mlp'.*\]"),
    "architecture that is neither a name nor a factory": (["TorchEstimator"], dict(architecture=3), None, TypeError, r"architecture: expected a registered name or a module factory, found int"),
    "unknown architecture parameter": (["TorchEstimator"], dict(architectureParams={"depth": 3}), None, ValueError, r"architectureParams: 'mlp' takes no parameter\(s\) \['depth'\]; valid ones are \[.*'hiddenLayers'"),
    "architectureParams that are not JSON": (["TorchEstimator"], dict(architectureParams={"hiddenLayers": {4}}), None, TypeError, r"architectureParams: expected JSON-serialisable values"),
    "unknown task": (["TorchEstimator"], dict(task="ranking"), None, ValueError, r"task: expected one of \['classification', 'regression', .*\], found 'ranking'"),
}
PARAM_CASES = [pytest.param(name, case, id=f"{name}-{case}") for case, (names, *_) in BAD_PARAMS.items() for name in names]


@pytest.mark.parametrize("name, case", PARAM_CASES)
def test_bad_params_are_rejected_before_training(frames, name, case):
    _, params, build, error, message = BAD_PARAMS[case]
    make, _ = ESTIMATORS[name]
    good = _good(frames, name)
    with pytest.raises(error, match=message):
        make(**params).fit(build(good) if build else good)


# -- fitted models: inputs they cannot score ----------------------------------------------
@pytest.fixture(scope="module")
def fitted(frames):
    """One model per estimator, trained for one epoch on its good frame (before training is forbidden)."""
    return {name: make().fit(_good(frames, name)) for name, (make, _) in ESTIMATORS.items()}


def _rows(spark, features, schema="features array<float>"):
    return spark.createDataFrame([(f,) for f in features], schema).coalesce(1)


# case -> (models, bad frame, error, message). Values can only be seen inside the Spark job, so
# those errors arrive wrapped (PythonException, or Py4JJavaError for checks made in the JVM);
# each such case costs a Python worker, so the shared scoring path is covered for every model by
# the length check and by a few models for the rest.
FIRST_OUTPUT = {"class": "rawPrediction", "value": "prediction", None: "embedding"}


def _scorable_with_output_taken(spark, name):
    if name == "WaveNet":
        return _rows(spark, [[1] * 8], "features array<int>").withColumn("prediction", F.lit(1.0))
    return _rows(spark, [[0.5] * 4]).withColumn(FIRST_OUTPUT[ESTIMATORS[name][1]], F.lit(1.0))


BAD_SCORING = {
    "missing features column": (
        ALL, lambda s, name: _rows(s, [[0.5] * 4]).withColumnRenamed("features", "x"), ValueError,
        r"featuresCol: column 'features' not found; the DataFrame has columns \['x'\]"),
    "features of wrong type": (
        ALL, lambda s, name: s.createDataFrame([("a",)], "features string"), TypeError,
        r"featuresCol: column 'features' must be .*; found string"),
    "output column already there": (
        ALL, _scorable_with_output_taken, ValueError,
        r"output column '(rawPrediction|prediction|embedding)' already exists in the DataFrame; choose another name"),
    "arrays shorter than in fit": (
        [n for n in ALL if n != "WaveNet"], lambda s, name: _rows(s, [[0.5] * 4, [0.5] * 3]), PythonException,
        r"featuresCol column 'features': expected arrays of length 4 as in fit, found length 3"),
    "arrays of two wrong lengths that add up": (
        ["MLPClassifier"], lambda s, name: _rows(s, [[0.5] * 3, [0.5] * 5]), PythonException,
        r"featuresCol column 'features': expected arrays of length 4 as in fit, found length 3, 5"),
    "vectors of another size": (
        ["MLPClassifier", "CNNRegressor"], lambda s, name: s.createDataFrame([(Vectors.dense([0.5] * 5),)], ["features"]).coalesce(1), PythonException,
        r"featuresCol column 'features': expected arrays of length 4 as in fit, found length 5"),
    "sparse vectors of another size": (
        ["RNNRegressor"], lambda s, name: s.createDataFrame([(Vectors.sparse(6, [0], [1.0]),)], ["features"]).coalesce(1), PythonException,
        r"featuresCol column 'features': expected vectors of size 4 as in fit, found size 6"),
    "NaN in features": (
        ["MLPClassifier", "Autoencoder", "TransformerRegressor"], lambda s, name: _rows(s, [[0.5, float("nan"), 0.5, 0.5]]), PythonException,
        r"featuresCol column 'features': expected finite values, found 1 NaN/infinite/null elements"),
    "null element in features": (
        ["MLPRegressor"], lambda s, name: _rows(s, [[0.5, None, 0.5, 0.5]]), PythonException,
        r"featuresCol column 'features': expected finite values, found 1 NaN/infinite/null elements"),
    "windows shorter than in fit": (
        ["WaveNet"], lambda s, name: _rows(s, [[1] * 5], "features array<int>"), JOB_FAILED,
        r"WaveNetModel: featuresCol column 'features': expected windows of 8 classes as in fit, found 5"),
    "class above mu": (
        ["WaveNet"], lambda s, name: _rows(s, [[1] * 7 + [9]], "features array<int>"), JOB_FAILED,
        r"WaveNetModel: featuresCol column 'features': expected integer mu-law classes in 0..7, found a value outside"),
    "non-integral class": (
        ["WaveNet"], lambda s, name: _rows(s, [[1.5] + [1.0] * 7], "features array<double>"), JOB_FAILED,
        r"expected integer mu-law classes in 0..7, found a value outside"),
    "vector windows": (
        ["WaveNet"], lambda s, name: s.createDataFrame([(Vectors.dense([1.0] * 8),)], ["features"]), TypeError,
        r"featuresCol: column 'features' must be an array of mu-law classes \(array<int>\); found vector"),
}
SCORING_CASES = [pytest.param(name, case, id=f"{name}Model-{case}") for case, (names, *_) in BAD_SCORING.items() for name in names]


@pytest.mark.parametrize("name, case", SCORING_CASES)
def test_inputs_a_fitted_model_cannot_score_raise_naming_the_column(spark, fitted, name, case):
    _, build, error, message = BAD_SCORING[case]
    with pytest.raises(error, match=message):
        fitted[name].transform(build(spark, name)).write.format("noop").mode("overwrite").save()


@pytest.fixture(scope="module")
def conditioned_wavenet(frames):
    """A WaveNet fitted for speaker ids 0..1."""
    return ESTIMATORS["WaveNet"][0](conditionCol="speaker", numConditions=2).fit(with_condition(frames["classes"]))


def test_a_condition_id_the_model_was_not_fitted_for_fails_the_job_naming_the_column(frames, conditioned_wavenet):
    unseen = with_condition(frames["classes"]).limit(1).withColumn("speaker", F.lit(2)).coalesce(1)
    with pytest.raises(JOB_FAILED, match=r"WaveNetModel: conditionCol column 'speaker': expected ids in 0..1, found 2"):
        conditioned_wavenet.transform(unseen).write.format("noop").mode("overwrite").save()


def test_null_feature_rows_are_scored_as_null_not_rejected(spark, fitted):
    out = fitted["MLPClassifier"].transform(_rows(spark, [None, [0.5] * 4])).collect()
    assert [r.prediction is None for r in out] == [True, False]
    assert out[0].probability is None and len(out[1].probability) == 3


# -- saved models with damaged files ------------------------------------------------------
def _hashes(path: str) -> dict[str, str]:
    return {
        os.path.relpath(os.path.join(root, f), path): hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest()
        for root, _, files in os.walk(path)
        for f in files
    }


def _edit_metadata(path: str, change) -> None:
    file = os.path.join(path, "metadata", "part-00000")
    metadata = json.loads(open(file).read())
    change(metadata)
    open(file, "w").write(json.dumps(metadata))


def _rewrite(file: str, change) -> None:
    data = open(file, "rb").read()
    open(file, "wb").write(change(data))


def _flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _bad_header_with_matching_checksum(path: str) -> None:
    """A weights file whose header is garbage but whose checksum was updated to match: only parsing can tell."""
    from sparkneural.estimators.persistence import sha256_file

    weights = os.path.join(path, "weights.safetensors")
    _rewrite(weights, lambda data: b"\xff" * 16 + data[16:])
    _edit_metadata(path, lambda m: m["sparkneural"].update(weightsSha256=sha256_file(weights)))


WEIGHTS, METADATA, HISTORY = "weights.safetensors", os.path.join("metadata", "part-00000"), "history.json"
DAMAGE = {
    "weights with a flipped byte": (
        lambda p: _rewrite(os.path.join(p, WEIGHTS), _flip_middle_byte),
        r"weights.safetensors does not match the checksum in its metadata \(modified or truncated\)"),
    "truncated weights": (
        lambda p: _rewrite(os.path.join(p, WEIGHTS), lambda d: d[: len(d) // 2]),
        r"weights.safetensors does not match the checksum in its metadata \(modified or truncated\)"),
    "empty weights file": (
        lambda p: _rewrite(os.path.join(p, WEIGHTS), lambda d: b""),
        r"weights.safetensors does not match the checksum"),
    "missing weights": (
        lambda p: os.remove(os.path.join(p, WEIGHTS)), r"missing weights.safetensors"),
    "weights header garbled, checksum updated": (
        _bad_header_with_matching_checksum, r"weights.safetensors is not a valid safetensors file"),
    "metadata that is not JSON": (
        lambda p: open(os.path.join(p, METADATA), "w").write("{not json"), r"corrupted metadata"),
    "truncated metadata": (
        lambda p: _rewrite(os.path.join(p, METADATA), lambda d: d[: len(d) // 2]), r"corrupted metadata"),
    "missing metadata": (
        lambda p: shutil.rmtree(os.path.join(p, "metadata")), r"not a saved sparkneural stage \(no metadata/part-00000\)"),
    "metadata of another library": (
        lambda p: _edit_metadata(p, lambda m: m.pop("sparkneural")), r"the metadata was not written by sparkneural"),
    "metadata naming a class outside sparkneural": (
        lambda p: _edit_metadata(p, lambda m: m.update({"class": "os.system"})), r"holds a os.system, not a sparkneural stage"),
    "metadata without the weights checksum": (
        lambda p: _edit_metadata(p, lambda m: m["sparkneural"].pop("weightsSha256")),
        r"metadata/part-00000 lacks the entry 'weightsSha256'; expected a complete sparkneural save"),
    "metadata whose architecture does not fit the weights": (
        lambda p: _edit_metadata(p, lambda m: m["sparkneural"]["architectureParams"].update(hiddenLayers=[5])),
        r"the weights do not match the stored architecture"),
    "metadata claiming a pickled architecture": (
        lambda p: _edit_metadata(p, lambda m: m["sparkneural"].update(pickled=True, pickleSha256="0" * 64)),
        r"the architecture is a pickled Python factory; loading it runs code from the file"),
    "history that is not JSON": (
        lambda p: open(os.path.join(p, HISTORY), "w").write("[{"), r"history.json is corrupted; expected JSON"),
    "missing history": (
        lambda p: os.remove(os.path.join(p, HISTORY)), r"expected history.json in the saved stage, found no such file"),
}


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("saved") / "mlp")
    fitted["MLPClassifier"].save(path)
    return path


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_save_is_rejected_naming_the_file_and_nothing_is_changed(saved, tmp_path, case):
    damage, message = DAMAGE[case]
    earlier = _hashes(saved)
    copy = str(tmp_path / "damaged")
    shutil.copytree(saved, copy)
    damage(copy)
    damaged = _hashes(copy)
    with pytest.raises(ValueError, match=rf"path '{re.escape(copy)}': .*{message}"):
        TorchModel.load(copy)
    assert _hashes(copy) == damaged and _hashes(saved) == earlier


def test_a_damaged_model_inside_a_saved_pipeline_is_rejected_naming_its_file(spark, fitted, tmp_path):
    from pyspark.ml import PipelineModel

    path = str(tmp_path / "pipeline")
    PipelineModel(stages=[fitted["MLPClassifier"]]).save(path)
    stage = os.path.join(path, "stages", os.listdir(os.path.join(path, "stages"))[0])
    _rewrite(os.path.join(stage, WEIGHTS), _flip_middle_byte)
    before = _hashes(path)
    with pytest.raises(ValueError, match=r"weights.safetensors does not match the checksum"):
        PipelineModel.load(path)
    assert _hashes(path) == before


def test_loading_a_path_that_does_not_exist_names_it(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match=rf"path '{re.escape(missing)}': expected a saved sparkneural stage, found no such file or directory"):
        TorchModel.load(missing)
    assert not os.path.exists(missing)


def test_saves_that_cannot_be_made_leave_the_earlier_save_unchanged(fitted, saved):
    earlier = _hashes(saved)
    with pytest.raises(ValueError, match=r"already exists; use write\(\).overwrite\(\).save\(path\)"):
        fitted["MLPRegressor"].save(saved)
    with pytest.raises(ValueError, match=r"path: sparkneural saves to local or mounted directories; found 'hdfs://cluster/models/mlp'"):
        fitted["MLPRegressor"].save("hdfs://cluster/models/mlp")
    assert _hashes(saved) == earlier


def test_a_rejected_fit_leaves_an_earlier_checkpoint_unchanged(frames, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "checkpoint.pt").write_bytes(b"an earlier run's checkpoint")
    earlier = _hashes(str(checkpoints))
    make, _ = ESTIMATORS["MLPClassifier"]
    with pytest.raises(ValueError, match=r"labelCol column 'label': expected class labels >= 0, found -1"):
        make(checkpointDir=str(checkpoints), resume=True).fit(_one_bad_row(frames["class"], label=F.lit(-1.0)))
    assert _hashes(str(checkpoints)) == earlier


# -- transformers: MuLawEncoder, MuLawDecoder, SequenceWindower ------------------------
@contextlib.contextmanager
def no_spark_job(spark):
    """The block must not start any Spark job (checks made on the driver only)."""
    context = spark.sparkContext
    group = f"bad-input-{uuid.uuid4().hex}"
    context.setJobGroup(group, "checks that must not run a job")
    try:
        yield
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    assert list(context.statusTracker().getJobIdsForGroup(group)) == []


@pytest.fixture(scope="module")
def audio_rows(spark):
    schema = "t int, samples array<float>, level double, name string, k array<int>"
    return spark.createDataFrame([(0, [0.1, -0.5, 0.9], 0.25, "a", [3, 7])], schema).cache()


# case -> (transformer, error, message); all found on the driver
BAD_TRANSFORMER_SETUP = {
    "MuLawEncoder-missing inputCol column": (lambda: MuLawEncoder(inputCol="s", outputCol="c"), ValueError, r"MuLawEncoder.inputCol: column 's' not found; the DataFrame has columns \['t', 'samples'"),
    "MuLawEncoder-string column": (lambda: MuLawEncoder(inputCol="name", outputCol="c"), TypeError, r"MuLawEncoder: inputCol 'name' must be float or double or an array of them; found string"),
    "MuLawEncoder-integer array": (lambda: MuLawEncoder(inputCol="k", outputCol="c"), TypeError, r"MuLawEncoder: inputCol 'k' must be float or double or an array of them; found array<int>"),
    "MuLawEncoder-zero mu": (lambda: MuLawEncoder(inputCol="samples", outputCol="c", mu=0), ValueError, r"MuLawEncoder: mu must be > 0, found 0"),
    "MuLawEncoder-negative mu": (lambda: MuLawEncoder(inputCol="samples", outputCol="c", mu=-255), ValueError, r"MuLawEncoder: mu must be > 0, found -255"),
    "MuLawEncoder-inputCol not set": (lambda: MuLawEncoder(outputCol="c"), ValueError, r"MuLawEncoder: inputCol is not set"),
    "MuLawEncoder-mu of wrong type": (lambda: MuLawEncoder(inputCol="samples", mu="loud"), TypeError, r'Invalid param value given for param "mu"'),
    "MuLawDecoder-missing inputCol column": (lambda: MuLawDecoder(inputCol="classes", outputCol="x"), ValueError, r"MuLawDecoder.inputCol: column 'classes' not found"),
    "MuLawDecoder-string column": (lambda: MuLawDecoder(inputCol="name", outputCol="x"), TypeError, r"MuLawDecoder: inputCol 'name' must be integer classes, float or double or an array of them; found string"),
    "MuLawDecoder-zero mu": (lambda: MuLawDecoder(inputCol="k", outputCol="x", mu=0), ValueError, r"MuLawDecoder: mu must be > 0, found 0"),
    "MuLawDecoder-inputCol not set": (lambda: MuLawDecoder(outputCol="x"), ValueError, r"MuLawDecoder: inputCol is not set"),
    "SequenceWindower-windowSize not set": (lambda: SequenceWindower(inputCol="level", orderCol="t"), ValueError, r"SequenceWindower: windowSize is not set"),
    "SequenceWindower-zero windowSize": (lambda: SequenceWindower(inputCol="level", orderCol="t", windowSize=0), ValueError, r"SequenceWindower: windowSize must be > 0, found 0"),
    "SequenceWindower-negative step": (lambda: SequenceWindower(inputCol="level", orderCol="t", windowSize=2, step=-1), ValueError, r"SequenceWindower: step must be > 0, found -1"),
    "SequenceWindower-zero horizon": (lambda: SequenceWindower(inputCol="level", orderCol="t", windowSize=2, horizon=0), ValueError, r"SequenceWindower: horizon must be > 0, found 0"),
    "SequenceWindower-unknown targetMode": (lambda: SequenceWindower(inputCol="level", orderCol="t", windowSize=2, targetMode="next"), ValueError, r"SequenceWindower: targetMode must be one of \['none', 'value', 'sequence'\], found 'next'"),
    "SequenceWindower-missing inputCol column": (lambda: SequenceWindower(inputCol="load", orderCol="t", windowSize=2), ValueError, r"SequenceWindower.inputCols: column 'load' not found"),
    "SequenceWindower-missing orderCol column": (lambda: SequenceWindower(inputCol="level", orderCol="time", windowSize=2), ValueError, r"SequenceWindower.orderCol: column 'time' not found"),
    "SequenceWindower-missing targetCol column": (lambda: SequenceWindower(inputCol="level", orderCol="t", windowSize=2, targetMode="value", targetCol="y"), ValueError, r"SequenceWindower.targetCol: column 'y' not found"),
    "SequenceWindower-string input": (lambda: SequenceWindower(inputCol="name", orderCol="t", windowSize=2), TypeError, r"SequenceWindower: column 'name' must be numeric; found string"),
    "SequenceWindower-order of wrong type": (lambda: SequenceWindower(inputCol="level", orderCol="k", windowSize=2), TypeError, r"SequenceWindower: orderCol 'k' must be numeric, string, date or timestamp; found array<int>"),
    "SequenceWindower-long format without orderCol": (lambda: SequenceWindower(inputCol="level", windowSize=2), ValueError, r"SequenceWindower: orderCol must be set for long-format \(scalar\) input columns"),
    "SequenceWindower-both inputCol and inputCols": (lambda: SequenceWindower(inputCol="level", inputCols=["level"], windowSize=2), ValueError, r"SequenceWindower: set exactly one of inputCol and inputCols"),
    "SequenceWindower-array and scalar inputs": (lambda: SequenceWindower(inputCols=["samples", "level"], windowSize=2), TypeError, r"SequenceWindower: inputCols \['samples', 'level'\] mix array and scalar columns"),
    "SequenceWindower-output names that collide": (lambda: SequenceWindower(inputCol="level", orderCol="t", windowSize=2, outputCol="t"), ValueError, r"SequenceWindower: output columns \['t', 't'\] must have distinct names"),
    "SequenceWindower-windowSize of wrong type": (lambda: SequenceWindower(inputCol="level", windowSize="wide"), TypeError, r'Invalid param value given for param "windowSize"'),
}


@pytest.mark.parametrize("case", list(BAD_TRANSFORMER_SETUP))
def test_transformers_reject_bad_columns_and_params_before_any_job(spark, audio_rows, case):
    make, error, message = BAD_TRANSFORMER_SETUP[case]
    with no_spark_job(spark), pytest.raises(error, match=message):
        make().transform(audio_rows)


BAD_TRANSFORMER_VALUES = {
    "MuLawEncoder-NaN without clip": (lambda: MuLawEncoder(inputCol="x", outputCol="c", clip=False), [float("nan"), 0.5], ValueError, r"MuLawEncoder: column 'x' has 1 value\(s\) outside \[-1, 1\] \(or NaN\) and clip=False"),
    "MuLawEncoder-infinity without clip": (lambda: MuLawEncoder(inputCol="x", outputCol="c", clip=False), [float("inf"), 0.5], ValueError, r"MuLawEncoder: column 'x' has 1 value\(s\) outside \[-1, 1\]"),
    "MuLawEncoder-sample above 1 without clip": (lambda: MuLawEncoder(inputCol="x", outputCol="c", clip=False), [1.5, -1.25], ValueError, r"MuLawEncoder: column 'x' has 2 value\(s\) outside \[-1, 1\]"),
}


@pytest.mark.parametrize("case", list(BAD_TRANSFORMER_VALUES))
def test_encoder_values_outside_the_range_raise_naming_the_column(spark, case):
    make, values, error, message = BAD_TRANSFORMER_VALUES[case]
    with pytest.raises(error, match=message):
        make().transform(spark.createDataFrame([(values,)], "x array<double>"))


@pytest.mark.parametrize("classes", [[3, 256], [-1, 3]], ids=["class above mu", "negative class"])
def test_decoder_classes_outside_0_to_mu_fail_the_job_naming_the_column(spark, classes):
    frame = spark.createDataFrame([(classes,)], "k array<int>").coalesce(1)
    with pytest.raises(JOB_FAILED, match=r"MuLawDecoder: column 'k' has a class outside 0..255"):
        MuLawDecoder(inputCol="k", outputCol="x").transform(frame).write.format("noop").mode("overwrite").save()


def test_nan_in_a_series_reaches_its_windows_and_the_estimator_names_the_column(spark):
    series = spark.createDataFrame([(i, float("nan") if i == 5 else float(i), float(i % 2)) for i in range(12)], "t int, v double, y double")
    windows = SequenceWindower(inputCol="v", orderCol="t", windowSize=4, step=4, targetMode="value", targetCol="y").transform(series)
    with pytest.raises(ValueError, match=r"RNNClassifier: invalid input data: featuresCol column 'features': expected finite values, found 1 NaN"):
        RNNClassifier(inputShape=[4, 1], hiddenSize=4, **QUIET).fit(windows)


def test_an_empty_frame_passes_through_transformers_as_an_empty_frame(spark, audio_rows):
    encoded = MuLawEncoder(inputCol="samples", outputCol="classes").transform(audio_rows.limit(0))
    windows = SequenceWindower(inputCol="classes", windowSize=2).transform(encoded)
    assert windows.count() == 0 and windows.schema["features"].dataType.simpleString() == "array<double>"


# -- BertEmbeddings: every check is made on the driver -----------------------------------
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat"]) + "\n")
    BertTokenizerFast.from_pretrained(str(path)).save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=8, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
    BertModel(config).eval().save_pretrained(str(path))
    return str(path)


def _bert_copy(tiny_bert, tmp_path, change) -> str:
    copy = str(tmp_path / "bert-copy")
    shutil.copytree(tiny_bert, copy)
    change(copy)
    return copy


def _remove_tokenizer(path):
    for name in os.listdir(path):
        if name.startswith(("vocab", "tokenizer", "special_tokens")):
            os.remove(os.path.join(path, name))


BAD_BERT = {
    "modelPath not set": (lambda b, t: dict(), ValueError, r"modelPath: expected a local directory with a BERT-like encoder .*, found None"),
    "modelPath that does not exist": (lambda b, t: dict(modelPath=str(t / "no-such-model")), ValueError, r"modelPath: '.*no-such-model' is not a directory; expected a local directory"),
    "modelPath that is a file": (lambda b, t: dict(modelPath=os.path.join(b, "vocab.txt")), ValueError, r"modelPath: '.*vocab.txt' is not a directory"),
    "modelPath without config.json": (lambda b, t: dict(modelPath=_bert_copy(b, t, lambda p: os.remove(os.path.join(p, "config.json")))), ValueError, r"modelPath: '.*bert-copy' has no config.json"),
    "config.json that is not JSON": (lambda b, t: dict(modelPath=_bert_copy(b, t, lambda p: open(os.path.join(p, "config.json"), "w").write("{not json"))), ValueError, r"modelPath: cannot read the model config in '.*bert-copy'"),
    "modelPath without weights": (lambda b, t: dict(modelPath=_bert_copy(b, t, lambda p: os.remove(os.path.join(p, "model.safetensors")))), ValueError, r"modelPath: '.*bert-copy' has no weights \(one of \['model.safetensors'"),
    "truncated weights": (lambda b, t: dict(modelPath=_bert_copy(b, t, lambda p: _rewrite(os.path.join(p, "model.safetensors"), lambda d: d[: len(d) // 2]))), ValueError, r"modelPath: '.*model.safetensors' is corrupted or truncated; expected a complete safetensors file"),
    "modelPath without a tokenizer": (lambda b, t: dict(modelPath=_bert_copy(b, t, _remove_tokenizer)), ValueError, r"modelPath: '.*bert-copy' has no tokenizer vocabulary"),
    "unknown layer strategy": (lambda b, t: dict(modelPath=b, layers="third_from_last"), ValueError, r"layers: expected one of \['last', .*\] or a non-empty list of hidden-state indices in 0..2 .*, found 'third_from_last'"),
    "layer index above the model's": (lambda b, t: dict(modelPath=b, layers=[0, 3]), ValueError, r"layers: expected .* indices in 0..2 .*, found \[0, 3\]"),
    "negative layer index": (lambda b, t: dict(modelPath=b, layers=[-1]), ValueError, r"layers: expected .*, found \[-1\]"),
    "empty layer list": (lambda b, t: dict(modelPath=b, layers=[]), ValueError, r"layers: expected .*, found \[\]"),
    "strategy needing more layers": (lambda b, t: dict(modelPath=b, layers="sum_last_four"), ValueError, r"layers: 'sum_last_four' needs a model with at least 3 layers; the model has 2"),
    "unknown pooling": (lambda b, t: dict(modelPath=b, pooling="max"), ValueError, r"pooling: expected one of \['cls', 'mean', 'none'\], found 'max'"),
    "unknown outputType": (lambda b, t: dict(modelPath=b, outputType="list"), ValueError, r"outputType: expected one of \['array', 'vector'\], found 'list'"),
    "unknown device": (lambda b, t: dict(modelPath=b, device="gpu"), ValueError, r"device: expected auto, cpu, cuda or cuda:N, found 'gpu'"),
    "zero batchSize": (lambda b, t: dict(modelPath=b, batchSize=0), ValueError, r"batchSize: expected a value > 0, found 0"),
    "negative batchSize": (lambda b, t: dict(modelPath=b, batchSize=-8), ValueError, r"batchSize: expected a value > 0, found -8"),
    "zero maxLength": (lambda b, t: dict(modelPath=b, maxLength=0), ValueError, r"maxLength: expected a value in 3..16 \(the model's max_position_embeddings\), found 0"),
    "maxLength above the model's": (lambda b, t: dict(modelPath=b, maxLength=17), ValueError, r"maxLength: expected a value in 3..16 .*, found 17"),
    "missing inputCol column": (lambda b, t: dict(modelPath=b, inputCol="body"), ValueError, r"inputCol: column 'body' not found; the DataFrame has columns \['id', 'text'\]"),
    "inputCol of wrong type": (lambda b, t: dict(modelPath=b, inputCol="id"), TypeError, r"inputCol: column 'id' must be a string column; found int"),
    "output column already there": (lambda b, t: dict(modelPath=b, outputCol="text"), ValueError, r"output column 'text' already exists in the DataFrame; choose another name"),
    "tokens column already there": (lambda b, t: dict(modelPath=b, pooling="none", tokensCol="id"), ValueError, r"output column 'id' already exists"),
}


@pytest.mark.parametrize("case", list(BAD_BERT))
def test_bert_embeddings_reject_bad_models_and_params_before_any_job(spark, tiny_bert, tmp_path, case):
    params, error, message = BAD_BERT[case]
    texts = spark.createDataFrame([(1, "the cat sat")], "id int, text string")
    bert = BertEmbeddings(**params(tiny_bert, tmp_path))
    earlier = _hashes(tiny_bert)
    with no_spark_job(spark), pytest.raises(error, match=message):
        bert.transform(texts)
    assert _hashes(tiny_bert) == earlier


# -- baselines -----------------------------------------------------------------------------
def _pca_frame(spark, extra=()):
    rows = [([float(i), float(i * i % 7), 1.0],) for i in range(8)] + [(r,) for r in extra]
    return spark.createDataFrame(rows, "features array<double>")


BAD_PCA_FIT = {
    "zero k": (dict(k=0), (), ValueError, r"k: expected at least 1 component, found 0"),
    "negative k": (dict(k=-2), (), ValueError, r"k: expected at least 1 component, found -2"),
    "k above the features": (dict(k=4), (), ValueError, r"k: expected at most 3 \(the number of features in 'features'\), found 4"),
    "missing inputCol column": (dict(inputCol="pixels"), (), ValueError, r"inputCol: column 'pixels' not found; the DataFrame has \['features'\]"),
    "null row": (dict(), [None], ValueError, r"inputCol: column 'features' contains 1 null values"),
    "NaN element": (dict(), [[float("nan"), 1.0, 1.0]], ValueError, r"inputCol column 'features': expected finite values, found 1 NaN/infinite/null elements"),
    "infinite element": (dict(), [[float("inf"), 1.0, 1.0]], ValueError, r"inputCol column 'features': expected finite values, found 1"),
    "null element": (dict(), [[None, 1.0, 1.0]], ValueError, r"inputCol column 'features': expected finite values, found 1"),
    "arrays of different lengths": (dict(), [[1.0, 2.0]], ValueError, r"inputCol column 'features': expected non-empty arrays of one length, found lengths from 2 to 3"),
}


@pytest.mark.parametrize("case", list(BAD_PCA_FIT))
def test_centred_pca_rejects_bad_input_naming_the_column(spark, case):
    params, extra, error, message = BAD_PCA_FIT[case]
    with pytest.raises(error, match=message):
        CenteredPCA(**params).fit(_pca_frame(spark, extra))


@pytest.mark.parametrize("frame, message", [
    (lambda s: s.createDataFrame([("a",)], "features string"), r"inputCol: column 'features' must be an MLlib vector or array<float>/array<double>, found string"),
    (lambda s: s.createDataFrame([([1, 2],)], "features array<int>"), r"found array<int>"),
    (lambda s: _pca_frame(s).limit(0), r"inputCol: column 'features' needs at least 2 rows to estimate a covariance, found 0"),
    (lambda s: _pca_frame(s).limit(1), r"needs at least 2 rows to estimate a covariance, found 1"),
], ids=["string column", "integer array", "empty DataFrame", "one row"])
def test_centred_pca_rejects_frames_it_cannot_fit(spark, frame, message):
    with pytest.raises(ValueError, match=message):
        CenteredPCA(k=1).fit(frame(spark))


@pytest.fixture(scope="module")
def pca_model(spark):
    return CenteredPCA(k=2).fit(_pca_frame(spark))


@pytest.mark.parametrize("rows, error, message", [
    ([[1.0, 2.0]], PythonException, r"inputCol: column 'features' must hold 3 values per row \(as in fit\), found sizes \[2\]"),
    ([[float("nan"), 1.0, 1.0]], PythonException, r"inputCol column 'features': expected finite values, found 1 NaN/infinite/null elements"),
], ids=["arrays shorter than in fit", "NaN element"])
def test_centred_pca_model_rejects_rows_it_cannot_project(spark, pca_model, rows, error, message):
    frame = spark.createDataFrame([(r,) for r in rows], "features array<double>").coalesce(1)
    with pytest.raises(error, match=message):
        pca_model.transform(frame).write.format("noop").mode("overwrite").save()


def test_centred_pca_model_load_of_a_missing_path_names_it(tmp_path):
    missing = str(tmp_path / "no-such-pca")
    with pytest.raises(ValueError, match=rf"path '{re.escape(missing)}': expected a saved CenteredPCAModel, found no such file or directory"):
        CenteredPCAModel.load(missing)


@pytest.mark.parametrize("keep_checksums, message", [
    (True, r"data/ cannot be read; expected the files written by CenteredPCAModel.save \(.*ChecksumException"),
    (False, r"data/ is corrupted; expected the mean and components written by CenteredPCAModel.save"),
], ids=["truncated part file", "truncated part file without its checksum"])
def test_centred_pca_model_load_of_a_damaged_save_names_it(pca_model, tmp_path, keep_checksums, message):
    path = str(tmp_path / "pca")
    pca_model.save(path)
    data = os.path.join(path, "data")
    for name in os.listdir(data):
        if name.startswith("part-"):
            _rewrite(os.path.join(data, name), lambda d: d[: len(d) // 2])
        elif name.endswith(".crc") and not keep_checksums:
            os.remove(os.path.join(data, name))
    damaged = _hashes(path)
    with pytest.raises(ValueError, match=rf"path '{re.escape(path)}': {message}"):
        CenteredPCAModel.load(path)
    assert _hashes(path) == damaged


BAD_BASELINE_PARAMS = {
    "kmeans-one cluster": (lambda: kmeans(k=1), r"k: expected at least 2 clusters, found 1"),
    "kmeans-unknown initMode": (lambda: kmeans(initMode="kmeans++"), r"initMode: expected one of \['k-means\|\|', 'random'\], found 'kmeans\+\+'"),
    "kmeans-zero maxIter": (lambda: kmeans(maxIter=0), r"maxIter: expected at least 1, found 0"),
    "kmeans-negative tol": (lambda: kmeans(tol=-1e-4), r"tol: expected a value >= 0, found -0.0001"),
    "mllib_mlp_baseline-zero numFeatures": (lambda: mllib_mlp_baseline(0, 10, [4]), r"numFeatures: expected at least 1, found 0"),
    "mllib_mlp_baseline-one class": (lambda: mllib_mlp_baseline(4, 1, [4]), r"numClasses: expected at least 2, found 1"),
    "mllib_mlp_baseline-zero hidden width": (lambda: mllib_mlp_baseline(4, 2, [4, 0]), r"hiddenLayers: expected positive widths, found \[4, 0\]"),
    "mllib_mlp_baseline-zero maxIter": (lambda: mllib_mlp_baseline(4, 2, [4], maxIter=0), r"maxIter: expected at least 1, found 0"),
}


@pytest.mark.parametrize("case", list(BAD_BASELINE_PARAMS))
def test_baseline_params_are_rejected_naming_the_param(spark, case):
    make, message = BAD_BASELINE_PARAMS[case]
    with no_spark_job(spark), pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("frame, message", [
    (lambda s: s.createDataFrame([(0, 1)], "cluster int, class int"), r"labelCol: column 'label' not found; the DataFrame has \['cluster', 'class'\]"),
    (lambda s: s.createDataFrame([(0, [1.0])], "cluster int, label array<double>"), r"labelCol: column 'label' must hold discrete labels \(integer, double or string\), found array<double>"),
    (lambda s: s.createDataFrame([(0, 1)], "cluster int, label int").limit(0), r"df: expected at least one row, found an empty DataFrame"),
    (lambda s: s.createDataFrame([(0, 1), (None, 1)], "cluster int, label int"), r"column 'cluster' contains nulls; drop or fill them before scoring"),
], ids=["missing label column", "label of wrong type", "empty DataFrame", "null cluster"])
def test_clustering_scores_reject_bad_columns(spark, frame, message):
    with pytest.raises(ValueError, match=message):
        clustering_scores(frame(spark), predictionCol="cluster", labelCol="label")


# -- WAV files -----------------------------------------------------------------------------
def _riff(format_code: int, bits: int, payload: bytes, rate: int = 16000) -> bytes:
    fmt = struct.pack("<HHIIHH", format_code, 1, rate, rate * bits // 8, bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _pcm_bytes(n: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.zeros(n, "<i2").tobytes())
    return buffer.getvalue()


BAD_WAV = {
    "float samples": (lambda: _riff(3, 32, np.zeros(8, "<f4").tobytes()), r"format code 3 \(IEEE float\) is not integer PCM \(code 1\); convert it to 16-bit PCM"),
    "A-law samples": (lambda: _riff(6, 8, bytes(8)), r"format code 6 \(A-law\) is not integer PCM \(code 1\)"),
    "mu-law samples": (lambda: _riff(7, 8, bytes(8)), r"format code 7 \(mu-law\) is not integer PCM \(code 1\)"),
    "text file named .wav": (lambda: b"sample,value\n0,0.5\n", r"not a readable WAV file \(file does not start with RIFF id\)"),
    "empty file": (lambda: b"", r"empty file \(0 bytes\)"),
    "header cut short": (lambda: _pcm_bytes(100)[:30], r"corrupt WAV header|not a readable WAV file"),
    "data shorter than announced": (lambda: _pcm_bytes(1000)[:-500], r"truncated data: the header announces 1000 frames, the file holds 750"),
}


@pytest.mark.parametrize("case", list(BAD_WAV))
def test_a_wav_file_that_is_not_integer_pcm_is_rejected_naming_the_file(spark, tmp_path, case):
    content, message = BAD_WAV[case]
    write_wav(np.zeros(16), tmp_path / "good.wav", 16000)
    (tmp_path / "bad.wav").write_bytes(content())
    earlier = _hashes(str(tmp_path))
    with pytest.raises(ValueError, match=rf"read_wav: 1 file\(s\) cannot be read as integer PCM WAV:\n  \S*bad\.wav: ({message})") as raised:
        read_wav(spark, str(tmp_path))
    assert "good.wav" not in str(raised.value) and _hashes(str(tmp_path)) == earlier


@pytest.mark.parametrize("call, message", [
    (lambda s, t: read_wav(s, str(t), sampleRate=0), r"read_wav: sampleRate must be > 0, found 0"),
    (lambda s, t: read_wav(s, str(t / "empty")), r"read_wav: no .wav files found at '.*empty'"),
    (lambda s, t: write_wav(np.zeros((2, 2, 2)), t / "x.wav", 16000), r"write_wav: samples must have shape \(n,\) or \(n, channels\), found \(2, 2, 2\)"),
    (lambda s, t: write_wav(np.array([0.0, np.nan]), t / "x.wav", 16000), r"write_wav: samples contain NaN or infinity"),
    (lambda s, t: write_wav(np.zeros(4), t / "x.wav", 0), r"write_wav: sampleRate must be > 0, found 0"),
], ids=["zero sampleRate", "directory without WAV files", "samples of three dimensions", "NaN samples", "zero sampleRate on write"])
def test_wav_arguments_are_rejected_naming_what_was_expected(spark, tmp_path, call, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=message):
        call(spark, tmp_path)
    assert not (tmp_path / "x.wav").exists()


# -- YAML configs ----------------------------------------------------------------------------
CONF_DEFAULTS = {"spark": {"master": "local[2]", "conf": {}}, "seed": 1, "rate": 0.5, "layers": [4], "model": {}}
BAD_CONF = {
    "unknown top-level key": ("sede: 3\n", [], r"config key 'sede' is unknown; valid keys here are \['layers', 'model', 'rate', 'seed', 'spark'\]"),
    "unknown nested key": ("spark:\n  mastr: local[1]\n", [], r"config key 'spark.mastr' is unknown; valid keys here are \['conf', 'master'\]"),
    "unknown model Param": ("model:\n  epoch: 3\n", [], r"config key 'model.epoch': unknown Param of MLPClassifier; valid keys are \[.*'epochs'"),
    "model Param of wrong type": ("model:\n  epochs: many\n", [], r"config key 'model.epochs': not a valid MLPClassifier.epochs \(.*epochs"),
    "value of wrong type": ("seed: one\n", [], r"config key 'seed': expected int, found str 'one'"),
    "mapping where a value goes": ("rate:\n  low: 0.1\n", [], r"config key 'rate': expected float, found mapping"),
    "value where a mapping goes": ("spark: local[1]\n", [], r"config key 'spark': expected mapping, found str 'local\[1\]'"),
    "top level that is a list": ("- seed\n- 3\n", [], r"config key '<top level>': expected a mapping, found list"),
    "invalid YAML": ("seed: [1, 2\n", [], r"config file '.*conf.yaml' is not valid YAML"),
    "unknown key in an override": ("", ["seeds=3"], r"config key 'seeds' is unknown"),
    "override without '='": ("", ["model.epochs"], r"override 'model.epochs': expected key=value"),
}


@pytest.mark.parametrize("case", list(BAD_CONF))
def test_a_bad_config_names_the_key_or_file_and_what_was_expected(tmp_path, case):
    text, overrides, message = BAD_CONF[case]
    path = tmp_path / "conf.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_conf(CONF_DEFAULTS, str(path), overrides, params={"model": MLPClassifier})
    assert path.read_text() == text


def test_a_config_file_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*missing.yaml' not found"):
        load_conf(CONF_DEFAULTS, str(tmp_path / "missing.yaml"))


# -- non-finite Params, inconsistent class weights, token ids beyond the vocabulary ----------------
MORE_PARAM_CHECKS = {
    "NaN learningRate": ("MLPClassifier", dict(learningRate=float("nan")), None, r"learningRate: expected a (finite )?value > 0, found nan"),
    "infinite learningRate": ("MLPClassifier", dict(learningRate=float("inf")), None, r"learningRate: expected a finite value > 0, found inf"),
    "NaN weightDecay": ("MLPClassifier", dict(weightDecay=float("nan")), None, r"weightDecay: expected a (finite )?value >= 0, found nan"),
    "NaN momentum": ("MLPClassifier", dict(momentum=float("nan")), None, r"momentum: expected a (finite )?value >= 0, found nan"),
    "NaN gradientClipNorm": ("MLPClassifier", dict(gradientClipNorm=float("nan")), None, r"gradientClipNorm: expected a (finite )?value > 0 or None, found nan"),
    "negative class weight": ("MLPClassifier", dict(classWeights=[1.0, -1.0, 1.0]), None, r"classWeights: expected at least 2 finite weights >= 0 with a positive sum, found \[1.0, -1.0, 1.0\]"),
    "NaN class weight": ("MLPClassifier", dict(classWeights=[1.0, float("nan"), 1.0]), None, r"classWeights: expected at least 2 finite weights >= 0"),
    "class weights all zero": ("MLPClassifier", dict(classWeights=[0.0, 0.0, 0.0]), None, r"classWeights: expected at least 2 finite weights >= 0 with a positive sum"),
    "class weights on a regressor": ("MLPRegressor", dict(classWeights=[1.0, 2.0]), None, r"classWeights: only classification uses them"),
    "empty inputShape": ("MLPClassifier", dict(inputShape=[]), None, r"inputShape: expected positive dimensions, found \[\]"),
    "checkpointDir that is a file": ("MLPClassifier", dict(checkpointDir=__file__), None, r"checkpointDir: expected a directory, found the file"),
    "token id above vocabSize": (
        "TransformerClassifier", dict(inputShape=[4], vocabSize=3),
        None, r"featuresCol column 'features': expected token ids in 0..2 \(vocabSize 3\), found values from 0 to 3"),
}


@pytest.mark.parametrize("case", list(MORE_PARAM_CHECKS))
def test_non_finite_and_inconsistent_params_are_refused(frames, case):
    name, params, build, message = MORE_PARAM_CHECKS[case]
    make, _ = ESTIMATORS[name]
    good = _good(frames, name)
    if "vocabSize" in params:  # ids 0..3 in every window
        good = good.withColumn("features", F.transform("features", lambda x, i: (i % 4).cast("float")))
    with pytest.raises(ValueError, match=message):
        make(**params).fit(build(good) if build else good)
