# Databricks notebook source
# MAGIC %md
# MAGIC # Autoencoder embeddings for clustering, next to PCA
# MAGIC
# MAGIC An autoencoder learns to squeeze each input through a narrow layer (the
# MAGIC *code* or *embedding*) and rebuild it from there. The code is a learned,
# MAGIC non-linear compression of the data, so it can stand in for the raw
# MAGIC features in cheaper downstream models. This notebook puts that to a test on
# MAGIC the 8x8 digits, without using their labels for training:
# MAGIC
# MAGIC 1. fit a centred PCA with 16 components (the linear baseline);
# MAGIC 2. train a deep autoencoder with a 16-value code, data-parallel with Horovod;
# MAGIC 3. compare how well each rebuilds unseen digits (reconstruction error);
# MAGIC 4. cluster raw pixels, PCA features and autoencoder embeddings with MLlib's
# MAGIC    K-means and score the clusters against the true digits (purity, ARI, NMI);
# MAGIC 5. look at cluster centres, a 2-D PCA map and the digits the autoencoder
# MAGIC    finds hardest to rebuild.

# COMMAND ----------

# MAGIC %md
# MAGIC ## Spark session
# MAGIC
# MAGIC On Databricks `spark` already exists; anywhere else a local session is started.

# COMMAND ----------

try:
    spark
except NameError:
    from sparkneural.session import get_spark

    spark = get_spark("sparkneural-autoencoder-kmeans", master="local[2]", conf={"spark.ui.enabled": "false"})
print("Spark", spark.version, "on", spark.conf.get("spark.master"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Parameters
# MAGIC
# MAGIC The defaults train the autoencoder for 80 epochs with Horovod on two
# MAGIC ranks. `SPARKNEURAL_NOTEBOOK_SMALL=1` gives a quick run (one local process,
# MAGIC a few epochs); `SPARKNEURAL_NOTEBOOK_BACKEND` and `SPARKNEURAL_NOTEBOOK_EPOCHS`
# MAGIC override one setting each.

# COMMAND ----------

import os
import tempfile

SMALL = os.environ.get("SPARKNEURAL_NOTEBOOK_SMALL", "0") == "1"
BACKEND = os.environ.get("SPARKNEURAL_NOTEBOOK_BACKEND", "local" if SMALL else "horovod")
NUM_PROC = 1 if BACKEND == "local" else 2
EPOCHS = int(os.environ.get("SPARKNEURAL_NOTEBOOK_EPOCHS", 10 if SMALL else 80))
COMPONENTS = 16  # PCA components and autoencoder code size
CLUSTERS = 10
SEED = 7
OUTPUT_DIR = os.environ.get("SPARKNEURAL_NOTEBOOK_OUTPUT", os.path.join(tempfile.gettempdir(), "sparkneural-notebooks"))
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "autoencoder_kmeans_pca")
print(f"backend={BACKEND} ranks={NUM_PROC} epochs={EPOCHS} output={OUTPUT_DIR}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The data
# MAGIC
# MAGIC The digits come as an `array<float>` column of 64 pixel intensities (0 to 16).
# MAGIC Dividing by 16 puts them in [0, 1], which suits the autoencoder's sigmoid
# MAGIC output layer. 90 % of the rows train PCA and the autoencoder; the other
# MAGIC 10 % measure how well they rebuild digits they have not seen.

# COMMAND ----------

from sparkneural.datasets import digits

data = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label").cache()
train, test = (part.cache() for part in data.randomSplit([0.9, 0.1], seed=SEED))
print(f"{train.count()} training rows, {test.count()} test rows")

# COMMAND ----------

# MAGIC %md
# MAGIC ## PCA: the linear baseline
# MAGIC
# MAGIC `CenteredPCA` subtracts the column means before projecting (MLlib's `PCA`
# MAGIC does not), so its projection matches the textbook definition. Its
# MAGIC reconstruction `mean + P Pᵀ (x - mean)` has the smallest squared error that
# MAGIC any projection onto 16 directions can reach on the training rows.

# COMMAND ----------

from pyspark.sql import functions as F

from sparkneural.baselines import CenteredPCA


def mean_squared_error(frame, original, reconstruction):
    """Mean over rows and pixels of (original - reconstruction)², as one Spark aggregation."""
    pairs = F.arrays_zip(F.col(original).cast("array<double>").alias("a"), F.col(reconstruction).cast("array<double>").alias("b"))
    per_row = F.aggregate(pairs, F.lit(0.0), lambda total, p: total + (p["a"] - p["b"]) ** 2) / F.size(original)
    return frame.agg(F.avg(per_row)).first()[0]


pca = CenteredPCA(k=COMPONENTS, inputCol="features", outputCol="pca", reconstructionCol="pcaReconstruction").fit(train)
explained = sum(pca.explainedVariance.toArray())
pca_mse = mean_squared_error(pca.transform(test), "features", "pcaReconstruction")
print(f"PCA-{COMPONENTS} keeps {explained:.1%} of the variance; test reconstruction MSE {pca_mse:.5f}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The autoencoder
# MAGIC
# MAGIC `Autoencoder(kind="deep")` stacks dense layers 64 → 256 → 128 → 16 and mirrors
# MAGIC them back to 64 outputs. It needs no label column: the input is the target.
# MAGIC Other kinds (`dense`, `conv`, `denoising`, `variational`, `sparse`) are
# MAGIC one Param away. The fitted model adds three columns: `embedding` (an MLlib
# MAGIC vector, ready for K-means), `reconstruction` and `reconstructionError`
# MAGIC (the row's mean squared error).

# COMMAND ----------

from sparkneural.estimators import Autoencoder

autoencoder = Autoencoder(
    kind="deep",
    hiddenLayers=[256, 128],
    bottleneck=COMPONENTS,
    epochs=EPOCHS,
    batchSize=32,
    learningRate=0.001,
    backend=BACKEND,
    numProc=NUM_PROC,
    seed=SEED,
    verbose=0,
).fit(train)
scored_test = autoencoder.transform(test).cache()
autoencoder_mse = scored_test.agg(F.avg("reconstructionError")).first()[0]
print(f"autoencoder-{COMPONENTS}: test reconstruction MSE {autoencoder_mse:.5f} (PCA-{COMPONENTS}: {pca_mse:.5f})")
scored_test.select("label", "embedding", "reconstructionError").show(3, truncate=70)

# COMMAND ----------

# MAGIC %md
# MAGIC ## K-means on three representations
# MAGIC
# MAGIC The same MLlib K-means (K = 10, from `sparkneural.baselines.kmeans`) clusters
# MAGIC each representation of all 1,797 digits. `clustering_scores` compares the
# MAGIC clusters with the true digits: *purity* (share of rows in their cluster's
# MAGIC majority digit), *ARI* (adjusted Rand index, 0 for chance) and *NMI*
# MAGIC (normalised mutual information). Only a 10 x 10 table of counts reaches
# MAGIC the driver.

# COMMAND ----------

import pandas as pd
from pyspark.ml.functions import array_to_vector

from sparkneural.baselines import clustering_scores, kmeans

representations = {
    "raw pixels (64)": data.select(array_to_vector("features").alias("x"), "label"),
    f"PCA ({COMPONENTS})": pca.transform(data).select(F.col("pca").alias("x"), "label"),
    f"autoencoder ({COMPONENTS})": autoencoder.transform(data).select(F.col("embedding").alias("x"), "label"),
}
scores, centres = {}, None
for name, frame in representations.items():
    fitted = kmeans(k=CLUSTERS, seed=SEED, featuresCol="x").fit(frame)
    scores[name] = clustering_scores(fitted.transform(frame), predictionCol="cluster", labelCol="label")
    if centres is None:
        centres = fitted.clusterCenters()  # the raw-pixel centres, drawable as digits
pd.DataFrame(scores).T.round(3)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Pictures
# MAGIC
# MAGIC The K-means centres on raw pixels are average digits. The PCA map (the
# MAGIC first two of the 16 components) shows which digits overlap in the two
# MAGIC strongest directions. The last figure puts the ten test digits with the
# MAGIC largest reconstruction error above the autoencoder's attempt to rebuild
# MAGIC them: a first step towards anomaly detection
# MAGIC (`Autoencoder(anomalyQuantile=...)` turns it into an `isAnomaly` column).

# COMMAND ----------

import IPython.display as ipd
import numpy as np

from sparkneural import plots

projected = pca.transform(data).select("pca", "label").toPandas()
worst = scored_test.orderBy(F.desc("reconstructionError")).limit(10).select("features", "reconstruction").toPandas()
figures = [
    plots.cluster_centres(np.array(centres), os.path.join(OUTPUT_DIR, "kmeans_centres.png")),
    plots.pca_scatter(np.stack(projected["pca"].map(lambda v: v.toArray()[:2])), projected["label"].astype(int), os.path.join(OUTPUT_DIR, "pca_scatter.png")),
    plots.reconstructions(np.stack(worst["features"]), np.stack(worst["reconstruction"]), os.path.join(OUTPUT_DIR, "hardest_digits.png")),
]
ipd.display(*[ipd.Image(filename=path) for path in figures])
