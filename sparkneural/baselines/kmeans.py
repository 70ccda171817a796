"""K-means clustering baseline: a thin helper around MLlib's ``KMeans``.

MLlib does all the work on the executors; this module only picks the
defaults the project's baselines use (K = 10, a fixed seed, a ``cluster``
output column) so that notebooks and pipelines build the same estimator.
"""

from __future__ import annotations

from pyspark.ml.clustering import KMeans

INIT_MODES = ("k-means||", "random")


def kmeans(
    k: int = 10,
    initMode: str = "k-means||",
    seed: int = 0,
    featuresCol: str = "features",
    predictionCol: str = "cluster",
    maxIter: int = 20,
    tol: float = 1e-4,
) -> KMeans:
    """Return an unfitted MLlib ``KMeans`` estimator with the baseline's defaults.

    ``initMode="k-means||"`` is MLlib's parallel version of k-means++
    (Bahmani et al. 2012): it draws the initial centres in a few passes over
    the data instead of K sequential ones, with the same approximation
    guarantee. ``"random"`` picks K rows at random. Features may be MLlib
    vectors or ``array<float>``/``array<double>`` columns (Spark >= 3.0).

    >>> model = kmeans(k=10, seed=1).fit(digits_df)
    >>> model.transform(digits_df).select("label", "cluster").show(3)
    >>> clustering_scores(model.transform(digits_df), "cluster", "label")
    """
    if k < 2:
        raise ValueError(f"k: expected at least 2 clusters, found {k}")
    if initMode not in INIT_MODES:
        raise ValueError(f"initMode: expected one of {list(INIT_MODES)}, found {initMode!r}")
    if maxIter < 1:
        raise ValueError(f"maxIter: expected at least 1, found {maxIter}")
    if tol < 0:
        raise ValueError(f"tol: expected a value >= 0, found {tol}")
    return KMeans(
        k=k,
        initMode=initMode,
        seed=seed,
        featuresCol=featuresCol,
        predictionCol=predictionCol,
        maxIter=maxIter,
        tol=tol,
    )
