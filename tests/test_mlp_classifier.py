import numpy as np
import pytest
import torch
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.ml.linalg import DenseVector

from sparkneural.estimators import MLPClassifier, MLPClassifierModel


@pytest.fixture(scope="module")
def split(digits_df):
    scaled = digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label")
    train, test = scaled.randomSplit([0.8, 0.2], seed=3)
    return train.cache(), test.cache()


@pytest.fixture(scope="module")
def horovod_model(split):
    train, _ = split
    return MLPClassifier(hiddenLayers=[64], epochs=4, batchSize=32, learningRate=0.005, numProc=2, backend="horovod", seed=1, verbose=0).fit(train)


def test_two_horovod_ranks_end_with_identical_weights(horovod_model):
    assert len(horovod_model.rankDigests) == 2
    assert horovod_model.rankDigests[0] == horovod_model.rankDigests[1]


def test_history_has_one_record_per_epoch_with_falling_loss(horovod_model):
    history = horovod_model.history
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert isinstance(horovod_model, MLPClassifierModel)


def test_transform_matches_the_network_applied_directly(horovod_model, split):
    _, test = split
    out = horovod_model.transform(test).collect()
    x = np.array([r.features for r in out], dtype=np.float32)
    with torch.no_grad():
        logits = horovod_model.network()(torch.from_numpy(x)).numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert all(isinstance(r.probability, DenseVector) for r in out[:3])
    # rawPrediction: the logits centred on their mean (ranks like the probabilities, as MLlib's)
    np.testing.assert_allclose([r.rawPrediction.toArray() for r in out], logits - logits.mean(1, keepdims=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([r.probability.toArray() for r in out], probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal([r.prediction for r in out], logits.argmax(1).astype(float))
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(horovod_model.transform(test))
    assert accuracy > 0.85


def test_vector_features_train_exactly_like_array_features(split):
    train, test = split
    vectors = train.withColumn("features", array_to_vector("features"))
    params = dict(hiddenLayers=[16], epochs=2, backend="local", seed=5, verbose=0)
    from_arrays = MLPClassifier(**params).fit(train)
    from_vectors = MLPClassifier(**params).fit(vectors)
    for name, value in from_arrays.weights.items():
        np.testing.assert_array_equal(value, from_vectors.weights[name])
    a = [r.prediction for r in from_arrays.transform(test).collect()]
    b = [r.prediction for r in from_vectors.transform(test.withColumn("features", array_to_vector("features"))).collect()]
    assert a == b


def test_params_follow_spark_ml_conventions():
    clf = MLPClassifier(hiddenLayers=[8], epochs=3)
    assert clf.getHiddenLayers() == [8] and clf.getEpochs() == 3
    assert clf.getBatchSize() == 64 and clf.getFeaturesCol() == "features"
    clf.setLearningRate(0.01)
    copy = clf.copy({clf.epochs: 7})
    assert copy.getEpochs() == 7 and clf.getEpochs() == 3
    assert copy.getLearningRate() == 0.01
    assert clf.extractParamMap()[clf.numProc] is None
