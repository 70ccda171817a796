"""K-means on digits: raw pixels vs PCA-16 vs autoencoder-16 embeddings (purity, ARI, NMI).

    sparkneural run digits_autoencoder_kmeans --conf conf/digits_autoencoder_kmeans.yaml

Scales the pixels to [0, 1], fits centred PCA and autoencoders with 16
components on the training split, clusters each representation with MLlib's
KMeans (K = 10) and scores the clusters against the digit labels. Also
reports the test reconstruction MSE of PCA and of every autoencoder kind.
Plots: cluster centres as 8x8 images, a PCA scatter, input vs reconstruction.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pyspark.ml.functions import array_to_vector
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sparkneural.estimators import Autoencoder

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-digits-ae-kmeans", "conf": {}, "logLevel": "ERROR"},
    "seed": 7,
    "components": 16,
    "clusters": 10,
    "kinds": ["dense", "deep", "sparse", "denoising", "variational", "conv"],
    "clusterWith": "deep",
    "model": {"hiddenLayers": [256, 128], "epochs": 80, "batchSize": 32, "learningRate": 0.001,
              "numProc": 2, "backend": "horovod"},
    "output": "output/digits_autoencoder_kmeans",
}
PARAMS = {"model": Autoencoder}
KIND_ARGUMENTS = {  # what each kind changes on top of conf["model"]
    "dense": {"hiddenLayers": None, "epochs": 60},
    "deep": {},
    "sparse": {"sparsityWeight": 1e-4},
    "denoising": {"noiseStd": 0.05},
    "variational": {},
    "conv": {"hiddenLayers": None, "inputShape": [1, 8, 8], "epochs": 30},
}


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from sparkneural import plots
    from sparkneural.baselines import CenteredPCA, clustering_scores, kmeans
    from sparkneural.datasets import digits

    data = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label")
    train, test = (d.cache() for d in data.randomSplit([0.9, 0.1], seed=conf["seed"]))
    k, seed = conf["components"], conf["seed"]
    pca = CenteredPCA(k=k, inputCol="features", outputCol="pca", reconstructionCol="pcaReconstruction").fit(train)
    metrics: dict[str, Any] = {"reconstruction_mse": {}, "clustering": {}}
    pca_test = pca.transform(test)
    metrics["reconstruction_mse"]["pca"] = _mse(pca_test, "features", "pcaReconstruction")

    models = {}
    for kind in conf["kinds"]:
        params = {**conf["model"], **KIND_ARGUMENTS.get(kind, {})}
        params = {name: value for name, value in params.items() if value is not None}
        models[kind] = Autoencoder(kind=kind, bottleneck=k, seed=seed, verbose=0, **params).fit(train)
        metrics["reconstruction_mse"][f"autoencoder_{kind}"] = (
            models[kind].transform(test).agg(F.avg("reconstructionError")).first()[0]
        )

    representations = {
        "raw pixels": data.select(array_to_vector("features").alias("x"), "label"),
        f"PCA-{k}": pca.transform(data).select(F.col("pca").alias("x"), "label"),
        f"autoencoder-{k} ({conf['clusterWith']})": models[conf["clusterWith"]].transform(data).select(F.col("embedding").alias("x"), "label"),
    }
    centres = None
    for name, frame in representations.items():
        fitted = kmeans(k=conf["clusters"], seed=seed, featuresCol="x").fit(frame)
        metrics["clustering"][name] = clustering_scores(fitted.transform(frame), "cluster", "label")
        if name == "raw pixels":
            centres = np.array(fitted.clusterCenters())

    print(f"K-means (K={conf['clusters']}) on digits:        purity    ARI    NMI")
    for name, scores in metrics["clustering"].items():
        print(f"  {name:<32} {scores['purity']:.3f}  {scores['ari']:.3f}  {scores['nmi']:.3f}")
    print(f"test reconstruction MSE with {k} components:")
    for name, value in metrics["reconstruction_mse"].items():
        print(f"  {name:<32} {value:.5f}")
    if conf["output"]:
        output = conf["output"]
        plots.cluster_centres(centres, os.path.join(output, "kmeans_centres.png"))
        two = CenteredPCA(k=2, inputCol="features", outputCol="xy").fit(data).transform(data).select("xy", "label").toPandas()
        plots.pca_scatter(np.stack(two["xy"].map(lambda v: v.toArray())), two["label"].astype(int), os.path.join(output, "pca_scatter.png"))
        sample = models[conf["clusterWith"]].transform(test.limit(10)).select("features", "reconstruction").toPandas()
        plots.reconstructions(np.stack(sample["features"]), np.stack(sample["reconstruction"]), os.path.join(output, "reconstructions.png"))
        models[conf["clusterWith"]].write().overwrite().save(os.path.join(output, "autoencoder"))
    return metrics


def _mse(frame, original: str, reconstruction: str) -> float:
    pairs = F.arrays_zip(F.col(original).cast("array<double>").alias("a"), F.col(reconstruction).alias("b"))
    squared = F.aggregate(pairs, F.lit(0.0), lambda acc, p: acc + (p["a"] - p["b"]) ** 2) / F.size(original)
    return frame.agg(F.avg(squared)).first()[0]


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
