# Databricks notebook source
# MAGIC %md
# MAGIC # Quick start: a digits classifier in a Spark ML pipeline
# MAGIC
# MAGIC This notebook trains a small neural network (a multilayer perceptron) on the
# MAGIC 8x8 handwritten digits and uses it like any other Spark ML model:
# MAGIC
# MAGIC 1. load the 1,797 digits as a Spark DataFrame, split into train, validation and test rows;
# MAGIC 2. build a `Pipeline` of MLlib's `StandardScaler` and sparkneural's `MLPClassifier`;
# MAGIC 3. fit it: the scaler runs as a Spark job, the network trains data-parallel with Horovod;
# MAGIC 4. score the test rows with `transform` and MLlib's evaluator;
# MAGIC 5. look at the training curves and the confusion matrix;
# MAGIC 6. save the fitted pipeline and load it back.

# COMMAND ----------

# MAGIC %md
# MAGIC ## Spark session
# MAGIC
# MAGIC On Databricks the notebook already has a `spark` session. Anywhere else
# MAGIC `get_spark` starts a local one with two cores, enough for two training ranks.

# COMMAND ----------

try:
    spark
except NameError:
    from sparkneural.session import get_spark

    spark = get_spark("sparkneural-quick-start", master="local[2]", conf={"spark.ui.enabled": "false"})
print("Spark", spark.version, "on", spark.conf.get("spark.master"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Parameters
# MAGIC
# MAGIC The defaults are a real run: Horovod with two ranks and up to 40 epochs
# MAGIC (early stopping usually ends it sooner). Setting the environment variable
# MAGIC `SPARKNEURAL_NOTEBOOK_SMALL=1` gives a quick run instead (one local process and
# MAGIC a few epochs); `SPARKNEURAL_NOTEBOOK_BACKEND` and `SPARKNEURAL_NOTEBOOK_EPOCHS`
# MAGIC override one setting each.

# COMMAND ----------

import os
import tempfile

SMALL = os.environ.get("SPARKNEURAL_NOTEBOOK_SMALL", "0") == "1"
BACKEND = os.environ.get("SPARKNEURAL_NOTEBOOK_BACKEND", "local" if SMALL else "horovod")
NUM_PROC = 1 if BACKEND == "local" else 2
EPOCHS = int(os.environ.get("SPARKNEURAL_NOTEBOOK_EPOCHS", 5 if SMALL else 40))
SEED = 7
OUTPUT_DIR = os.environ.get("SPARKNEURAL_NOTEBOOK_OUTPUT", os.path.join(tempfile.gettempdir(), "sparkneural-notebooks"))
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "quick_start_digits_mlp")
print(f"backend={BACKEND} ranks={NUM_PROC} epochs={EPOCHS} output={OUTPUT_DIR}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The data
# MAGIC
# MAGIC `digits_split` returns two cached DataFrames. `labelled` holds the training
# MAGIC rows and the validation rows, told apart by the boolean column
# MAGIC `isValidation`; `test` is kept aside until the end. The 64 pixel
# MAGIC intensities (0 to 16) are an MLlib vector column `pixels` and the digit is
# MAGIC the `label` column (0.0 to 9.0).

# COMMAND ----------

from sparkneural.datasets import digits_split

labelled, test = digits_split(spark, (0.8, 0.1, 0.1), seed=SEED)
labelled.printSchema()
labelled.groupBy("isValidation").count().show()
print("test rows:", test.count())

# COMMAND ----------

# MAGIC %md
# MAGIC ## The pipeline
# MAGIC
# MAGIC `StandardScaler` gives every pixel zero mean and unit variance, and writes the
# MAGIC `features` column that `MLPClassifier` reads. The classifier has two hidden
# MAGIC layers (128 and 64 units). `validationCol` tells it which rows to hold out:
# MAGIC after each epoch it measures the validation loss, stops when that has not
# MAGIC improved for 8 epochs and keeps the best epoch's weights.
# MAGIC
# MAGIC Nothing runs until `fit`. Before any training job starts, the classifier
# MAGIC checks the input columns (types, lengths, missing values, label range)
# MAGIC and reports a mistake as one error that names the column.

# COMMAND ----------

import time

from pyspark.ml import Pipeline
from pyspark.ml.feature import StandardScaler

from sparkneural.estimators import MLPClassifier

scaler = StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True)
classifier = MLPClassifier(
    hiddenLayers=[128, 64],
    dropout=0.1,
    epochs=EPOCHS,
    batchSize=32,
    learningRate=0.001,
    validationCol="isValidation",
    earlyStoppingPatience=8,
    backend=BACKEND,
    numProc=NUM_PROC,
    seed=SEED,
    verbose=0,
)
started = time.perf_counter()
model = Pipeline(stages=[scaler, classifier]).fit(labelled)
train_seconds = time.perf_counter() - started
mlp = model.stages[-1]
print(f"trained in {train_seconds:.1f} s: {len(mlp.history)} epochs, best epoch {mlp.bestEpoch}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Predictions and test accuracy
# MAGIC
# MAGIC The fitted pipeline is a `PipelineModel`. Its `transform` adds the columns an
# MAGIC MLlib classifier would: `rawPrediction`, `probability` (vectors) and
# MAGIC `prediction` (a double), so `MulticlassClassificationEvaluator` works as it is.
# MAGIC Scoring runs on the executors in Arrow batches.

# COMMAND ----------

from pyspark.ml.evaluation import MulticlassClassificationEvaluator

predictions = model.transform(test).select("label", "prediction", "probability").cache()
predictions.show(5, truncate=60)
accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)
print(f"test accuracy {accuracy:.4f} on {predictions.count()} rows")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Training curves and confusion matrix
# MAGIC
# MAGIC `history` holds one entry per epoch with the training and validation loss
# MAGIC and accuracy. `sparkneural.plots` draws small figures from collected data and
# MAGIC writes them as PNG files, shown here inline.

# COMMAND ----------

import IPython.display as ipd

from sparkneural import plots

print(mlp.history[-1])
curves = plots.training_curves(mlp.history, os.path.join(OUTPUT_DIR, "training_curves.png"), metrics=("loss", "accuracy"))
pdf = predictions.select("label", "prediction").toPandas()
confusion = plots.confusion_matrix(pdf["label"].astype(int), pdf["prediction"].astype(int), os.path.join(OUTPUT_DIR, "confusion_matrix.png"))
ipd.display(ipd.Image(filename=curves), ipd.Image(filename=confusion))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Save and load
# MAGIC
# MAGIC The whole pipeline (scaler and network) saves with `write().save()` and loads
# MAGIC with `PipelineModel.load`. The network is stored as its architecture
# MAGIC (a name and its arguments, as JSON) plus a weights file; loading it
# MAGIC runs no code from the files. sparkneural writes its stages to a local or
# MAGIC mounted directory (on Databricks, one under `/dbfs/`), so pick one that
# MAGIC the jobs loading the model can read.

# COMMAND ----------

from pyspark.ml import PipelineModel

path = os.path.join(OUTPUT_DIR, "model")
model.write().overwrite().save(path)
reloaded = PipelineModel.load(path)
reloaded_accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(reloaded.transform(test))
print(f"saved to {path}; the loaded pipeline scores {reloaded_accuracy:.4f} on the test rows")
