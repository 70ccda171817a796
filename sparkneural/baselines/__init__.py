"""Classical baselines as Spark ML stages: K-means, centred PCA, MLlib's MLP, clustering scores.

Everything here runs on Spark MLlib and needs no torch, so the baselines can
be fitted on the same DataFrames, in the same pipelines, as sparkneural models.

>>> from sparkneural.baselines import kmeans, clustering_scores
>>> clustered = kmeans(k=10, seed=1).fit(df).transform(df)
>>> clustering_scores(clustered, predictionCol="cluster", labelCol="label")
"""

from sparkneural.baselines.kmeans import kmeans
from sparkneural.baselines.metrics import clustering_scores, scores_from_contingency
from sparkneural.baselines.mlp import mllib_mlp_baseline, mllib_mlp_baseline_for
from sparkneural.baselines.pca import CenteredPCA, CenteredPCAModel

__all__ = [
    "CenteredPCA",
    "CenteredPCAModel",
    "clustering_scores",
    "kmeans",
    "mllib_mlp_baseline",
    "mllib_mlp_baseline_for",
    "scores_from_contingency",
]
