"""The Spark ML contract of TorchEstimator/TorchModel: pipelines, tuning, persistence,
early stopping, resume and the three backends."""

import math

import numpy as np
import pytest
import torch
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import array_to_vector
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from pyspark.sql import functions as F

from injected_faults import fail_at
from sparkneural.estimators import MLPClassifier, MLPClassifierModel, TorchEstimator, TorchModel, allow_pickle

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)

QUIET = dict(verbose=0, backend="local")


@pytest.fixture(scope="module")
def pixels(digits_df):
    """Digits with the pixels as an MLlib vector plus one scalar column, split 80/20."""
    df = digits_df.select(array_to_vector("features").alias("pixels"), (F.col("label") % 3).alias("extra"), "label")
    train, test = df.randomSplit([0.8, 0.2], seed=11)
    return train.cache(), test.cache()


@pytest.fixture(scope="module")
def scaled(digits_df):
    df = digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label")
    return df.randomSplit([0.8, 0.2], seed=5)


def test_pipeline_fit_save_load_gives_identical_predictions(pixels, tmp_path):
    train, test = pixels
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=["pixels", "extra"], outputCol="assembled"),
        StandardScaler(inputCol="assembled", outputCol="features", withMean=True),
        MLPClassifier(hiddenLayers=[32], epochs=3, seed=2, **QUIET),
    ])
    model = pipeline.fit(train)
    model.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert isinstance(loaded.stages[-1], MLPClassifierModel)
    before = model.transform(test).select("rawPrediction", "prediction").collect()
    after = loaded.transform(test).select("rawPrediction", "prediction").collect()
    assert [r.prediction for r in before] == [r.prediction for r in after]
    np.testing.assert_array_equal([r.rawPrediction.toArray() for r in before], [r.rawPrediction.toArray() for r in after])
    assert loaded.stages[-1].history == model.stages[-1].history


def test_any_model_loads_through_torch_model_and_keeps_params(scaled, tmp_path):
    train, _ = scaled
    model = MLPClassifier(hiddenLayers=[8], epochs=1, predictionCol="digit", **QUIET).fit(train)
    model.save(str(tmp_path / "m"))
    loaded = TorchModel.load(str(tmp_path / "m"))
    assert type(loaded) is MLPClassifierModel
    assert loaded.uid == model.uid and loaded.getPredictionCol() == "digit"
    assert loaded.architectureSpec == model.architectureSpec


def test_unfitted_estimator_saves_and_loads(tmp_path):
    est = MLPClassifier(hiddenLayers=[5, 4], learningRate=0.3, optimizer="sgd")
    est.save(str(tmp_path / "est"))
    loaded = MLPClassifier.load(str(tmp_path / "est"))
    assert loaded.getHiddenLayers() == [5, 4] and loaded.getLearningRate() == 0.3
    assert loaded.getOptimizer() == "sgd" and loaded.uid == est.uid


def test_cross_validator_picks_the_better_model_and_materialises_once_per_fold(pixels, monkeypatch):
    train, _ = pixels
    calls = []
    original = TorchEstimator._materialize
    monkeypatch.setattr(TorchEstimator, "_materialize", lambda self, df, summary: calls.append(1) or original(self, df, summary))
    clf = MLPClassifier(featuresCol="pixels", epochs=2, seed=1, **QUIET)
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-5, 1e-2]).addGrid(clf.hiddenLayers, [[16]]).build()
    cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, numFolds=2, seed=3,
                        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"))
    model = cv.fit(train)
    assert len(model.avgMetrics) == 2 and model.avgMetrics[1] > model.avgMetrics[0] + 0.2
    assert model.bestModel.getLearningRate() == 1e-2
    # one materialisation per fold for both param maps, plus the final refit
    assert len(calls) == 2 + 1


def test_binary_classification_evaluator_accepts_a_two_class_model(digits_df):
    two = digits_df.where("label IN (0, 1)").selectExpr("transform(features, v -> v / 16.0) AS features", "label")
    model = MLPClassifier(hiddenLayers=[8], epochs=5, learningRate=0.01, **QUIET).fit(two)
    auc = BinaryClassificationEvaluator().evaluate(model.transform(two))
    assert model.numClasses == 2 and auc > 0.95


def test_early_stopping_stops_every_rank_together_and_restores_the_best_epoch(scaled):
    train, _ = scaled
    flagged = train.withColumn("isVal", F.rand(4) < 0.2)
    model = MLPClassifier(hiddenLayers=[64], epochs=30, learningRate=0.05, validationCol="isVal",
                          earlyStoppingPatience=2, numProc=2, backend="horovod", seed=3, verbose=0).fit(flagged)
    stopped = len(model.history)
    assert stopped < 30 and model.rankEpochs == [stopped, stopped]
    best = min(model.history, key=lambda h: h["val_loss"])
    assert model.bestEpoch == best["epoch"] and stopped - model.bestEpoch == 2
    # the returned weights are those of the best epoch: recompute its validation loss
    validation = model.transform(flagged.where("isVal")).select("probability", "label").collect()
    loss = -np.mean([math.log(max(r.probability[int(r.label)], 1e-12)) for r in validation])
    assert loss == pytest.approx(best["val_loss"], rel=1e-4)


def test_resume_trains_only_the_missing_epochs_and_matches_an_uninterrupted_run(scaled, tmp_path):
    train, _ = scaled
    params = dict(hiddenLayers=[16], epochs=4, checkpointDir=str(tmp_path / "ckpt"), seed=9, **QUIET)
    failing = MLPClassifier(**params)
    failing._test_hooks = [fail_at(3)]
    with pytest.raises(RuntimeError, match="injected failure at epoch 3"):
        failing.fit(train)
    resumed = MLPClassifier(resume=True, **params).fit(train)
    assert resumed.epochsRun == [3, 4]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    straight = MLPClassifier(**{**params, "checkpointDir": str(tmp_path / "other")}).fit(train)
    for name, value in straight.weights.items():
        np.testing.assert_array_equal(value, resumed.weights[name])


def test_local_and_one_rank_horovod_agree_and_torch_distributor_ranks_agree(scaled):
    train, _ = scaled
    params = dict(hiddenLayers=[16], epochs=2, seed=4, verbose=0)
    local = MLPClassifier(backend="local", **params).fit(train)
    horovod = MLPClassifier(backend="horovod", numProc=1, **params).fit(train)
    for name, value in local.weights.items():
        np.testing.assert_allclose(value, horovod.weights[name], rtol=1e-5, atol=1e-6)
    distributed = MLPClassifier(backend="torch_distributor", numProc=2, **params).fit(train)
    assert len(distributed.rankDigests) == 2 and len(set(distributed.rankDigests)) == 1
    assert distributed.history[-1]["loss"] < distributed.history[0]["loss"]


def _tiny_net(inputShape, outputSize):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(math.prod(inputShape), outputSize))


def test_custom_module_factory_trains_and_loads_only_with_allow_pickle(scaled, tmp_path):
    train, test = scaled
    model = TorchEstimator(architecture=_tiny_net, epochs=2, **QUIET).fit(train)
    path = str(tmp_path / "custom")
    model.save(path)
    with pytest.raises(ValueError, match="allowPickle=True"):
        TorchModel.load(path)
    loaded = TorchModel.load(path, allowPickle=True)
    with allow_pickle():
        assert TorchModel.load(path).weights.keys() == model.weights.keys()
    a = [r.prediction for r in model.transform(test).collect()]
    assert a == [r.prediction for r in loaded.transform(test).collect()]
