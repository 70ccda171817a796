"""The Spark ML contract, exactly: MLlib's evaluators read our columns as they read MLlib's,
every Param is a typed keyword, ``thresholds`` means what it means in MLlib, each Param is
declared once, and concurrent fits of one grid give what sequential ones give."""

from __future__ import annotations

import inspect
import math
import pathlib
import re

import numpy as np
import pytest
from pyspark.ml import Estimator, Model
from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

import sparkneural.estimators as estimators
from sparkneural.estimators import MLPClassifier, TCNRegressor, TorchEstimator
from sparkneural.estimators.params import declarations
from sparkneural.training.spec import TRAINING, TrainSpec

QUIET = dict(verbose=0, backend="local")
STAGES = [getattr(estimators, name) for name in estimators.__all__ if isinstance(getattr(estimators, name), type)]


@pytest.fixture(scope="module")
def zeros_and_ones(digits_df):
    return digits_df.where("label IN (0, 1)").selectExpr("transform(features, v -> v / 16.0) AS features", "label").cache()


@pytest.fixture(scope="module")
def three_digits(digits_df):
    return digits_df.where("label < 3").selectExpr("transform(features, v -> v / 16.0) AS features", "label").cache()


@pytest.mark.parametrize("epochs, learning_rate", [(1, 1e-4), (3, 1e-2)], ids=["undertrained", "trained"])
def test_binary_evaluator_gives_the_same_auc_on_raw_prediction_as_on_probability(zeros_and_ones, epochs, learning_rate, one_torch_thread):
    model = MLPClassifier(hiddenLayers=[8], epochs=epochs, learningRate=learning_rate, seed=4, **QUIET).fit(zeros_and_ones)
    scored = model.transform(zeros_and_ones).cache()
    on_raw = BinaryClassificationEvaluator(rawPredictionCol="rawPrediction").evaluate(scored)
    on_probability = BinaryClassificationEvaluator(rawPredictionCol="probability").evaluate(scored)
    assert on_raw == pytest.approx(on_probability, abs=1e-9)
    rows = scored.select("rawPrediction", "probability").collect()
    raw = np.array([r.rawPrediction.toArray() for r in rows])
    np.testing.assert_allclose(raw.sum(axis=1), 0.0, atol=1e-5)  # binary margins [-m, m]


def test_raw_prediction_is_centred_logits_whose_softmax_is_the_probability(three_digits, one_torch_thread):
    model = MLPClassifier(hiddenLayers=[8], epochs=2, seed=1, **QUIET).fit(three_digits)
    rows = model.transform(three_digits).select("rawPrediction", "probability", "prediction").collect()
    raw = np.array([r.rawPrediction.toArray() for r in rows])
    probability = np.array([r.probability.toArray() for r in rows])
    softmax = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, probability, atol=1e-5)
    np.testing.assert_allclose(raw.mean(axis=1), 0.0, atol=1e-5)
    assert [r.prediction for r in rows] == list(raw.argmax(axis=1).astype(float))


def test_thresholds_predict_the_largest_probability_over_threshold_as_mllib_does(three_digits, one_torch_thread):
    model = MLPClassifier(hiddenLayers=[8], epochs=2, learningRate=1e-2, seed=2, **QUIET).fit(three_digits)
    thresholds = [1.0, 1.0, 0.001]
    rows = model.setThresholds(thresholds).transform(three_digits).select("probability", "prediction").collect()
    probability = np.array([r.probability.toArray() for r in rows])
    assert [r.prediction for r in rows] == list((probability / np.array(thresholds)).argmax(axis=1).astype(float))
    # the thresholds moved some predictions to class 2, not all
    changed = np.array([r.prediction for r in rows]) != probability.argmax(axis=1)
    assert 0 < changed.sum() < len(rows)
    # a zero threshold: that class, always (MLlib reads p / 0 as +inf)
    rows = model.setThresholds([1.0, 0.0, 1.0]).transform(three_digits).select("prediction").collect()
    assert {r.prediction for r in rows} == {1.0}
    # MulticlassClassificationEvaluator reads the thresholded predictions
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(three_digits))
    assert accuracy == pytest.approx(np.mean([r.label == 1.0 for r in three_digits.select("label").collect()]))


@pytest.mark.parametrize("thresholds, message", [
    ([0.5, 0.5], r"thresholds: expected one value per class \(3\), found 2"),
    ([0.0, 0.0, 1.0], r"thresholds: expected finite values >= 0 with at most one zero, found \[0.0, 0.0, 1.0\]"),
])
def test_bad_thresholds_are_rejected_before_training(three_digits, thresholds, message, monkeypatch):
    monkeypatch.setattr(TorchEstimator, "_materialize", lambda *a: pytest.fail("training started"))
    with pytest.raises(ValueError, match=message):
        MLPClassifier(thresholds=thresholds, **QUIET).fit(three_digits)


@pytest.mark.parametrize("value, expected", [(False, 0), (True, 1), (2, 2)])
def test_flag_like_params_accept_bools(value, expected):
    assert MLPClassifier(verbose=value).getVerbose() == expected
    assert MLPClassifier(resume=value > 0).getResume() is (value > 0)


@pytest.mark.parametrize("stage", STAGES, ids=lambda c: c.__name__)
def test_every_stage_spells_out_its_params_as_keywords_with_their_defaults(stage):
    instance = stage()
    for method in (stage, stage.__init__, stage.setParams):
        signature = inspect.signature(method)
        keywords = {n: p for n, p in signature.parameters.items() if n != "self"}
        assert all(p.kind is p.KEYWORD_ONLY for p in keywords.values())
        assert sorted(keywords) == sorted(p.name for p in instance.params)
        for param in instance.params:
            default = instance.getOrDefault(param) if instance.hasDefault(param) else None
            assert keywords[param.name].default == default, param.name
    with pytest.raises(TypeError, match=rf"{stage.__name__}: unexpected keyword argument\(s\) \['learningrate'\]"):
        stage(learningrate=0.1)


@pytest.mark.parametrize("stage", [s for s in STAGES if issubclass(s, (Estimator, Model))], ids=lambda c: c.__name__)
def test_every_declared_param_has_one_default_and_its_accessors(stage):
    instance = stage()
    for name, declared in declarations(stage).items():
        param = instance.getParam(name)
        assert param.doc == declared.doc
        suffix = name[0].upper() + name[1:]
        assert hasattr(instance, "get" + suffix) and hasattr(instance, "set" + suffix)
        if name not in getattr(stage, "_defaults", {}) and name not in ("architecture", "task"):
            assert instance.getOrDefault(param) == declared.default, name


def test_training_params_are_the_spec_fields_with_the_same_defaults():
    fields = {f.name: f.default for f in TrainSpec.__dataclass_fields__.values()}
    estimator = TorchEstimator()
    for declared in TRAINING:
        default = tuple(declared.default) if isinstance(declared.default, list) else declared.default
        assert fields[declared.name] == default, declared.name
        assert estimator.getOrDefault(declared.name) == declared.default


def test_no_task_switch_outside_the_tasks_module():
    root = pathlib.Path(estimators.__file__).parents[1]
    pattern = re.compile(r"task ==|task in")
    found = [f"{path}:{n}" for path in root.rglob("*.py") if path.name != "tasks.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_cross_validator_in_parallel_gives_the_sequential_metrics(three_digits):
    clf = MLPClassifier(hiddenLayers=[16], epochs=2, dropout=0.3, seed=7, **QUIET)
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 1e-2]).build()
    metrics = {}
    for parallelism in (1, 2):
        cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, numFolds=2, seed=3, parallelism=parallelism,
                            evaluator=MulticlassClassificationEvaluator(metricName="accuracy"))
        metrics[parallelism] = cv.fit(three_digits).avgMetrics
    assert metrics[2] == metrics[1]


def test_tcn_regressor_predicts_a_noisy_sine_at_least_twice_as_well_as_the_last_value(spark, one_torch_thread):
    rng = np.random.default_rng(0)
    t = np.arange(3000)
    series = np.sin(2 * math.pi * t / 40) + rng.normal(0, 0.05, len(t))
    steps = 24
    rows = [(i, [float(v) for v in series[i : i + steps]], float(series[i + steps])) for i in range(len(series) - steps)]
    df = spark.createDataFrame(rows, "i int, features array<double>, label double")
    train, test = df.where("i < 2400"), df.where(f"i >= {2400 + steps}")  # no window of the test in training
    model = TCNRegressor(inputShape=[1, steps], channels=[16, 16, 16], kernelSize=3, epochs=8, batchSize=64,
                         learningRate=0.005, seed=0, **QUIET).fit(train)
    scored = model.transform(test).select("features", "label", "prediction").collect()
    label = np.array([r.label for r in scored])
    rmse = np.sqrt(np.mean((np.array([r.prediction for r in scored]) - label) ** 2))
    naive = np.sqrt(np.mean((np.array([r.features[-1] for r in scored]) - label) ** 2))
    assert rmse <= 0.5 * naive, (rmse, naive)


def test_rnn_regressor_with_one_value_per_step_writes_an_array_per_row_equal_to_the_network(spark, one_torch_thread):
    import torch

    from sparkneural.estimators import RNNRegressor

    rows = [([float(i + t) / 10 for t in range(5)], [float(i + t + 1) / 10 for t in range(5)]) for i in range(24)]
    df = spark.createDataFrame(rows, "features array<double>, label array<double>")
    model = RNNRegressor(inputShape=[5, 1], hiddenSize=4, returnSequences=True, epochs=1, **QUIET).fit(df)
    scored = model.transform(df).select("features", "prediction").collect()
    with torch.no_grad():
        expected = model.network()(torch.tensor([r.features for r in scored], dtype=torch.float32).reshape(-1, 5, 1))
    np.testing.assert_allclose([r.prediction for r in scored], expected.reshape(len(scored), -1).numpy(), rtol=1e-5, atol=1e-6)
