"""Classical baselines: K-means helper, clustering scores, centred PCA and MLlib's MLP.

Each check compares with an independent reference: scikit-learn's PCA and
clustering metrics on the same data, or a hand-computed purity.
"""

import json
import os

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.clustering import KMeans
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from sparkneural.baselines import (
    CenteredPCA,
    CenteredPCAModel,
    clustering_scores,
    kmeans,
    mllib_mlp_baseline,
    mllib_mlp_baseline_for,
    scores_from_contingency,
)


@pytest.fixture(scope="module")
def digits_x():
    return load_digits().data


# --- K-means and clustering scores -------------------------------------------------------


def test_kmeans_helper_configures_mllib_kmeans(spark):
    estimator = kmeans(k=7, initMode="random", seed=3, featuresCol="x", maxIter=5)
    assert isinstance(estimator, KMeans)
    assert (estimator.getK(), estimator.getInitMode(), estimator.getSeed()) == (7, "random", 3)
    assert (estimator.getFeaturesCol(), estimator.getPredictionCol(), estimator.getMaxIter()) == ("x", "cluster", 5)
    with pytest.raises(ValueError, match="initMode"):
        kmeans(initMode="k-means++")


def test_kmeans_on_digits_pixels_scores_like_sklearn_metrics(digits_df, report):
    predicted = kmeans(k=10, seed=1).fit(digits_df).transform(digits_df)
    scores = clustering_scores(predicted, predictionCol="cluster", labelCol="label")
    pairs = predicted.select("label", "cluster").toPandas()
    assert scores["ari"] == pytest.approx(adjusted_rand_score(pairs.label, pairs.cluster), abs=1e-12)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(pairs.label, pairs.cluster), abs=1e-12)
    majority = pairs.groupby("cluster").label.agg(lambda s: s.value_counts().iloc[0]).sum()
    assert scores["purity"] == pytest.approx(majority / len(pairs))
    # Raw-pixel K-means on digits is far above chance (scikit-learn's KMeans gets ARI ~0.67).
    assert scores["ari"] > 0.5 and scores["nmi"] > 0.6
    for name, value in scores.items():
        report(f"kmeans K=10 digits pixels {name}", value)


def _assignments(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, n)
    noisy = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 8, n))
    return {
        "random": (labels, rng.integers(0, 10, n)),
        "noisy": (labels, noisy),
        "identical": (labels, labels),
        "permuted": (labels, (labels * 5 + 3) % 6),
        "split": (labels, labels * 2 + rng.integers(0, 2, n)),
        "one cluster": (labels, np.zeros(n, dtype=int)),
        "one class": (np.zeros(n, dtype=int), labels),
        "both one": (np.zeros(n, dtype=int), np.ones(n, dtype=int)),
        "singletons": (labels, np.arange(n)),
        "independent": (np.repeat([0, 1], 4), np.tile([0, 1], 4)),
    }


@pytest.mark.parametrize("case", list(_assignments()))
def test_contingency_scores_equal_sklearn(case):
    labels, clusters = _assignments()[case]
    table = {}
    for pair in zip(labels.tolist(), clusters.tolist()):
        table[pair] = table.get(pair, 0) + 1
    scores = scores_from_contingency(table)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(labels, clusters), abs=1e-12)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)


def test_clustering_scores_in_spark_equal_sklearn(spark):
    # The formulas are pinned case by case above; here the Spark contingency
    # table feeds them, with integer, string and single-cluster columns.
    labels, noisy = _assignments(n=200, seed=5)["noisy"]
    names = np.array(list("abcdef"))[labels]
    rows = [(int(a), str(b), int(c), 0) for a, b, c in zip(labels, names, noisy)]
    df = spark.createDataFrame(rows, "label long, name string, cluster int, single int")
    for labelCol, predictionCol, truth, assigned in (
        ("label", "cluster", labels, noisy),
        ("name", "cluster", names, noisy),
        ("label", "single", labels, np.zeros(200)),
    ):
        scores = clustering_scores(df, predictionCol=predictionCol, labelCol=labelCol)
        assert scores["ari"] == pytest.approx(adjusted_rand_score(truth, assigned), abs=1e-12)
        assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(truth, assigned), abs=1e-12)


def test_purity_counts_each_clusters_majority_label(spark):
    df = spark.createDataFrame(
        [(0.0, 0), (0.0, 0), (0.0, 1), (1.0, 1), (1.0, 1), (2.0, 1), (2.0, 2)], ["label", "cluster"]
    )
    # cluster 0: {0, 0} -> 2; cluster 1: {0, 1, 1, 2} -> 2; cluster 2: {2} -> 1
    assert clustering_scores(df)["purity"] == pytest.approx(5 / 7)


def test_clustering_scores_reject_missing_columns_and_nulls(spark):
    df = spark.createDataFrame([(0.0, 1), (1.0, None)], "label double, cluster int")
    with pytest.raises(ValueError, match="'prediction' not found"):
        clustering_scores(df, predictionCol="prediction")
    with pytest.raises(ValueError, match="'cluster' contains nulls"):
        clustering_scores(df)
    with pytest.raises(ValueError, match="empty DataFrame"):
        clustering_scores(df.limit(0))


# --- centred PCA ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pca5(digits_df):
    return CenteredPCA(k=5, outputCol="pca", reconstructionCol="reconstruction").fit(digits_df)


@pytest.fixture(scope="module")
def pca5_rows(pca5, digits_df):
    return pca5.transform(digits_df).select("pca", "reconstruction").collect()


def _same_up_to_sign(ours, reference):
    signs = np.sign(np.sum(ours * reference, axis=0))
    np.testing.assert_allclose(ours * signs, reference, atol=1e-8)


def test_centred_pca_projection_equals_sklearn_up_to_sign(pca5, pca5_rows, digits_x, report):
    reference = SklearnPCA(n_components=5).fit(digits_x)
    projected = np.array([row.pca.toArray() for row in pca5_rows])
    _same_up_to_sign(projected, reference.transform(digits_x))
    _same_up_to_sign(pca5.pc.toArray(), reference.components_.T)
    np.testing.assert_allclose(pca5.mean.toArray(), reference.mean_, atol=1e-10)
    np.testing.assert_allclose(pca5.explainedVariance.toArray(), reference.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(pca5.componentVariance.toArray(), reference.explained_variance_, rtol=1e-9)
    report("pca k=5 digits explained variance", float(pca5.explainedVariance.toArray().sum()))


def test_centred_pca_reconstruction_equals_sklearn_inverse_transform(pca5_rows, digits_x, report):
    reference = SklearnPCA(n_components=5).fit(digits_x)
    expected = reference.inverse_transform(reference.transform(digits_x))
    reconstructed = np.array([row.reconstruction for row in pca5_rows])
    np.testing.assert_allclose(reconstructed, expected, atol=1e-8)
    report("pca k=5 digits reconstruction MSE (pixels 0..16)", float(np.mean((reconstructed - digits_x) ** 2)))


def test_centred_pca_is_unmoved_by_an_offset_unlike_mllib_transform(pca5, pca5_rows, digits_df):
    # Vector input shifted by 1000: a centred projection does not change.
    shifted = digits_df.select(array_to_vector(F.transform("features", lambda v: v + 1000.0)).alias("features"))
    model = CenteredPCA(k=5, outputCol="pca").fit(shifted)
    projected = np.array([row.pca.toArray() for row in model.transform(shifted).select("pca").collect()])
    _same_up_to_sign(projected, np.array([row.pca.toArray() for row in pca5_rows]))
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-8)


def test_centred_pca_round_trips_through_a_saved_pipeline(pca5, digits_df, tmp_path):
    sample = digits_df.limit(20)
    expected = [row.pca for row in pca5.transform(sample).select("pca").collect()]
    PipelineModel(stages=[pca5]).write().overwrite().save(str(tmp_path / "pipeline"))

    # A Python-only stage inside a saved PipelineModel loads through its own reader.
    reloaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert isinstance(reloaded.stages[0], CenteredPCAModel)
    assert [row.pca for row in reloaded.transform(sample).select("pca").collect()] == expected

    (stage_dir,) = os.listdir(tmp_path / "pipeline" / "stages")
    stage_path = tmp_path / "pipeline" / "stages" / stage_dir
    loaded = CenteredPCAModel.load(str(stage_path))
    assert loaded.uid == pca5.uid and loaded.getK() == 5 and loaded.getReconstructionCol() == "reconstruction"
    np.testing.assert_array_equal(loaded.pc.toArray(), pca5.pc.toArray())
    np.testing.assert_array_equal(loaded.mean.toArray(), pca5.mean.toArray())
    # The state is plain JSON text, nothing pickled.
    (part,) = [p for p in os.listdir(stage_path / "data") if p.startswith("part-")]
    state = json.loads((stage_path / "data" / part).read_text())
    assert len(state["mean"]) == 64 and len(state["components"]) == 64 and len(state["components"][0]) == 5


def test_centred_pca_estimator_params_save_load_and_copy(tmp_path):
    estimator = CenteredPCA(k=3, inputCol="pixels", outputCol="code")
    estimator.save(str(tmp_path / "estimator"))
    loaded = CenteredPCA.load(str(tmp_path / "estimator"))
    assert (loaded.getK(), loaded.getInputCol(), loaded.getOutputCol()) == (3, "pixels", "code")
    assert loaded.getReconstructionCol() is None
    copied = estimator.copy({estimator.k: 4})
    assert copied.getK() == 4 and estimator.getK() == 3


def test_centred_pca_rejects_bad_input_before_any_job(digits_df, spark):
    with pytest.raises(ValueError, match="'label' must be an MLlib vector or array"):
        CenteredPCA(inputCol="label").fit(digits_df)
    with pytest.raises(ValueError, match="'pixels' not found"):
        CenteredPCA(inputCol="pixels").fit(digits_df)
    tiny = spark.createDataFrame([([1.0, 2.0],), ([2.0, 0.0],), ([0.5, 1.0],)], "features array<double>")
    with pytest.raises(ValueError, match="k: expected at most 2"):
        CenteredPCA(k=3).fit(tiny)
    with pytest.raises(ValueError, match="null values"):
        CenteredPCA(k=1).fit(tiny.union(spark.createDataFrame([(None,)], "features array<double>")))


# --- MLlib's MLP -------------------------------------------------------------------------


def test_mllib_mlp_baseline_layers_and_accuracy_on_digits(digits_df, report):
    vectors = digits_df.select(array_to_vector(F.transform("features", lambda v: v / 16.0)).alias("features"), "label")
    train, test = vectors.randomSplit([0.8, 0.2], seed=3)
    estimator = mllib_mlp_baseline(numFeatures=64, numClasses=10, hiddenLayers=[32], maxIter=30, seed=1)
    assert estimator.getLayers() == [64, 32, 10] and estimator.getSeed() == 1
    predictions = estimator.fit(train).transform(test)
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)
    assert accuracy > 0.85
    report("mllib MLP [64,32,10] maxIter=30 digits test accuracy", accuracy)


def test_mllib_mlp_baseline_for_copies_the_sparkneural_estimators_shape_and_columns(spark):
    from sparkneural.estimators import MLPClassifier

    clf = MLPClassifier(hiddenLayers=[48, 24], seed=7, featuresCol="pixels", labelCol="digit", predictionCol="guess")
    baseline = mllib_mlp_baseline_for(clf, numFeatures=64, numClasses=10, maxIter=30)
    assert baseline.getLayers() == [64, 48, 24, 10]
    assert (baseline.getSeed(), baseline.getMaxIter()) == (7, 30)
    assert (baseline.getFeaturesCol(), baseline.getLabelCol(), baseline.getPredictionCol()) == ("pixels", "digit", "guess")
    with pytest.raises(ValueError, match="hiddenLayers"):
        mllib_mlp_baseline(64, 10, [32, 0])
