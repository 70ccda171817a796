"""External clustering scores (purity, ARI, NMI) computed from a Spark contingency table.

Spark counts the (label, cluster) pairs with one ``groupBy``; only that
table — at most (number of classes) x (number of clusters) rows — reaches the
driver, where the closed-form scores are finished in plain Python. The
formulas and their special cases follow scikit-learn's
``adjusted_rand_score`` and ``normalized_mutual_info_score`` (arithmetic
mean normalisation), so the figures are directly comparable.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict

from pyspark.sql import DataFrame

_DISCRETE = ("tinyint", "smallint", "int", "bigint", "float", "double", "string", "boolean")


def clustering_scores(df: DataFrame, predictionCol: str = "cluster", labelCol: str = "label") -> dict[str, float]:
    """Compare cluster assignments with true labels: ``{"purity", "ari", "nmi"}``.

    - purity: fraction of rows whose cluster's majority label is their label
      (1.0 is perfect; it rewards many small clusters, so read it beside ARI/NMI).
    - ari: adjusted Rand index, 0 for chance agreement, 1 for identical partitions.
    - nmi: mutual information divided by the arithmetic mean of the two entropies.

    Labels and clusters may be any discrete type (integers, doubles holding
    integers, strings); their values are only compared for equality. One
    row per distinct (label, cluster) pair comes back to the driver, so both
    columns must be discrete, not continuous values.

    >>> predicted = kmeans(k=10, seed=1).fit(digits_df).transform(digits_df)
    >>> clustering_scores(predicted, predictionCol="cluster", labelCol="label")
    {'purity': 0.7796..., 'ari': 0.6473..., 'nmi': 0.7340...}
    """
    for role, name in (("predictionCol", predictionCol), ("labelCol", labelCol)):
        if name not in df.columns:
            raise ValueError(f"{role}: column {name!r} not found; the DataFrame has {df.columns}")
        kind = df.schema[name].dataType.simpleString()
        if kind not in _DISCRETE:
            raise ValueError(f"{role}: column {name!r} must hold discrete labels (integer, double or string), found {kind}")

    rows = df.groupBy(labelCol, predictionCol).count().collect()
    if not rows:
        raise ValueError("df: expected at least one row, found an empty DataFrame")
    table: dict[tuple, int] = {}
    for row in rows:
        label, cluster = row[labelCol], row[predictionCol]
        if label is None or cluster is None:
            column = labelCol if label is None else predictionCol
            raise ValueError(f"column {column!r} contains nulls; drop or fill them before scoring")
        table[(label, cluster)] = int(row["count"])
    return scores_from_contingency(table)


def scores_from_contingency(table: dict[tuple, int]) -> dict[str, float]:
    """Purity, ARI and NMI from a contingency table ``{(label, cluster): count}``.

    >>> scores_from_contingency({(0, 0): 5, (1, 1): 5})
    {'purity': 1.0, 'ari': 1.0, 'nmi': 1.0}
    """
    class_sizes: dict = defaultdict(int)
    cluster_sizes: dict = defaultdict(int)
    cluster_majority: dict = defaultdict(int)
    for (label, cluster), count in table.items():
        class_sizes[label] += count
        cluster_sizes[cluster] += count
        cluster_majority[cluster] = max(cluster_majority[cluster], count)
    n = sum(class_sizes.values())
    return {
        "purity": sum(cluster_majority.values()) / n,
        "ari": _adjusted_rand(table, class_sizes, cluster_sizes, n),
        "nmi": _normalized_mutual_info(table, class_sizes, cluster_sizes, n),
    }


def _adjusted_rand(table: dict, class_sizes: dict, cluster_sizes: dict, n: int) -> float:
    # Pair-confusion form in exact Python integers (n**2 overflows int64 near 3e9 rows).
    sum_squares = sum(c * c for c in table.values())
    tp = sum_squares - n
    fp = sum(b * b for b in cluster_sizes.values()) - sum_squares
    fn = sum(a * a for a in class_sizes.values()) - sum_squares
    tn = n * n - fp - fn - sum_squares
    if fn == 0 and fp == 0:
        return 1.0  # identical partitions, including one cluster vs one class
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _entropy(sizes, n: int) -> float:
    return -sum((s / n) * (math.log(s) - math.log(n)) for s in sizes)


def _normalized_mutual_info(table: dict, class_sizes: dict, cluster_sizes: dict, n: int) -> float:
    if len(class_sizes) == len(cluster_sizes) == 1:
        return 1.0  # neither labelling splits the data: both entropies are 0, a perfect match
    if len(class_sizes) == 1 or len(cluster_sizes) == 1:
        return 0.0  # MI <= min(H(labels), H(clusters)) = 0
    terms = (
        (count / n) * (math.log(count) + math.log(n) - math.log(class_sizes[label]) - math.log(cluster_sizes[cluster]))
        for (label, cluster), count in table.items()
    )
    # As scikit-learn does: drop rounding-level terms so independent labellings give exactly 0.
    mutual_info = max(0.0, sum(t for t in terms if abs(t) >= sys.float_info.epsilon))
    if mutual_info == 0.0:
        return 0.0
    mean_entropy = (_entropy(class_sizes.values(), n) + _entropy(cluster_sizes.values(), n)) / 2
    return mutual_info / mean_entropy
