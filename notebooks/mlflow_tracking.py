# Databricks notebook source
# MAGIC %md
# MAGIC # Training curves in MLflow
# MAGIC
# MAGIC A sparkneural fit logs to the active MLflow run from the driver: each epoch's
# MAGIC training and validation metrics at `step=epoch` as the epoch ends, then the best
# MAGIC epoch and the number of restarts. This notebook
# MAGIC
# MAGIC 1. turns on `mlflow.pyspark.ml.autolog()` and fits a `Pipeline` of MLlib's
# MAGIC    `StandardScaler` and sparkneural's `MLPClassifier`: one run holds both stages'
# MAGIC    Params and the classifier's curves;
# MAGIC 2. fits the classifier again with two learning rates, one run each, to compare
# MAGIC    their curves;
# MAGIC 3. reads the metrics back from MLflow and draws them.
# MAGIC
# MAGIC On Databricks the runs appear in the notebook's experiment (the flask icon in the
# MAGIC right-hand bar, or **Experiments** in the sidebar): open a run and its
# MAGIC **Model metrics** tab, or select runs and **Compare**, to see the curves.

# COMMAND ----------

# MAGIC %md
# MAGIC ## Spark session
# MAGIC
# MAGIC On Databricks the notebook already has a `spark` session. Anywhere else
# MAGIC `get_spark` starts a local one with two cores.

# COMMAND ----------

try:
    spark
except NameError:
    from sparkneural.session import get_spark

    spark = get_spark("sparkneural-mlflow", master="local[2]", conf={"spark.ui.enabled": "false"})
print("Spark", spark.version, "on", spark.conf.get("spark.master"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Parameters
# MAGIC
# MAGIC The defaults train with Horovod on two ranks for up to 30 epochs.
# MAGIC `SPARKNEURAL_NOTEBOOK_SMALL=1` gives a quick run (one local process, a few
# MAGIC epochs); `SPARKNEURAL_NOTEBOOK_BACKEND` and `SPARKNEURAL_NOTEBOOK_EPOCHS`
# MAGIC override one setting each.

# COMMAND ----------

import os
import tempfile

SMALL = os.environ.get("SPARKNEURAL_NOTEBOOK_SMALL", "0") == "1"
BACKEND = os.environ.get("SPARKNEURAL_NOTEBOOK_BACKEND", "local" if SMALL else "horovod")
NUM_PROC = 1 if BACKEND == "local" else 2
EPOCHS = int(os.environ.get("SPARKNEURAL_NOTEBOOK_EPOCHS", 6 if SMALL else 30))
SEED = 7
OUTPUT_DIR = os.environ.get("SPARKNEURAL_NOTEBOOK_OUTPUT", os.path.join(tempfile.gettempdir(), "sparkneural-notebooks"))
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "mlflow_tracking")
print(f"backend={BACKEND} ranks={NUM_PROC} epochs={EPOCHS} output={OUTPUT_DIR}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Where the runs go
# MAGIC
# MAGIC On Databricks, MLflow already tracks to the workspace and the notebook's own
# MAGIC experiment: nothing to set. Elsewhere, without `MLFLOW_TRACKING_URI`, this
# MAGIC notebook keeps its runs in a directory under the output folder: a file store,
# MAGIC which MLflow 3 accepts with `MLFLOW_ALLOW_FILE_STORE=true` (or point
# MAGIC `MLFLOW_TRACKING_URI` at a tracking server, e.g. `mlflow server` and
# MAGIC `http://127.0.0.1:5000`).

# COMMAND ----------

import mlflow

ON_DATABRICKS = "DATABRICKS_RUNTIME_VERSION" in os.environ
if not ON_DATABRICKS and not os.environ.get("MLFLOW_TRACKING_URI"):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri("file://" + os.path.abspath(os.path.join(OUTPUT_DIR, "mlruns")))
    mlflow.set_experiment("sparkneural-digits")
print("MLflow", mlflow.__version__, "tracking to", mlflow.get_tracking_uri())

# COMMAND ----------

# MAGIC %md
# MAGIC ## The data
# MAGIC
# MAGIC The 8x8 digits, split into training and validation rows (the boolean column
# MAGIC `isValidation`) and test rows.

# COMMAND ----------

from sparkneural.datasets import digits_split

labelled, test = digits_split(spark, (0.8, 0.1, 0.1), seed=SEED)
print("labelled rows:", labelled.count(), " test rows:", test.count())

# COMMAND ----------

# MAGIC %md
# MAGIC ## A pipeline, autologged
# MAGIC
# MAGIC `mlflow.pyspark.ml.autolog()` opens a run around `fit` and logs every stage's
# MAGIC Params (on Databricks it is on by default). sparkneural logs into that run as
# MAGIC the network trains: `loss`, `accuracy`, `val_loss`, `val_accuracy` and
# MAGIC `seconds` per epoch, then `best_epoch`, `best_val_loss` and `restarts`.
# MAGIC Each epoch's record comes to the driver during the fit (`verbose=1` also
# MAGIC prints it) and its metrics are logged then; watch the run's charts fill in while it trains.

# COMMAND ----------

import mlflow.pyspark.ml
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler

from sparkneural.estimators import MLPClassifier

mlflow.pyspark.ml.autolog(log_models=False, log_datasets=False)
scaler = StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True)
classifier = MLPClassifier(
    hiddenLayers=[64, 32],
    epochs=EPOCHS,
    batchSize=32,
    learningRate=0.002,
    validationCol="isValidation",
    earlyStoppingPatience=5,
    backend=BACKEND,
    numProc=NUM_PROC,
    seed=SEED,
    verbose=1,
)
model = Pipeline(stages=[scaler, classifier]).fit(labelled)
mlp = model.stages[-1]
pipeline_run = mlflow.last_active_run()
accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(test))
print(f"run {pipeline_run.info.run_id}: {len(mlp.history)} epochs, best epoch {mlp.bestEpoch}, test accuracy {accuracy:.4f}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Comparing learning rates
# MAGIC
# MAGIC Inside an explicit `mlflow.start_run()` the fit logs into that run (autolog
# MAGIC adds the Params there too). One run per learning rate, named after it, makes
# MAGIC them easy to compare in the experiment's UI. Set `mlflowLogging=False` on an
# MAGIC estimator, or `spark.sparkneural.mlflow.enabled=false` on the session, to
# MAGIC train without logging.

# COMMAND ----------

scaled = model.stages[0].transform(labelled)  # the pipeline's fitted scaler
rate_runs = {}
for rate in (0.0005, 0.01):
    with mlflow.start_run(run_name=f"learningRate={rate}") as run:
        classifier.copy({classifier.learningRate: rate, classifier.verbose: 0}).fit(scaled)
    rate_runs[rate] = run.info.run_id
mlflow.pyspark.ml.autolog(disable=True)
print(rate_runs)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The curves, read back from MLflow
# MAGIC
# MAGIC `MlflowClient().get_metric_history` returns every value a run logged for a
# MAGIC metric with its step. Rebuilt into one record per epoch, they draw with
# MAGIC `sparkneural.plots.training_curves`, the same way as a model's `history`.

# COMMAND ----------

import IPython.display as ipd
from mlflow import MlflowClient

from sparkneural import plots

client = MlflowClient()


def logged_history(run_id):
    """One record per epoch, {"epoch": step, metric: value, ...}, from what the run logged."""
    epochs = {}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        for metric in client.get_metric_history(run_id, key):
            epochs.setdefault(metric.step, {"epoch": metric.step})[key] = metric.value
    return [epochs[step] for step in sorted(epochs)]


from_mlflow = logged_history(pipeline_run.info.run_id)
summary = {key: value for key, value in client.get_run(pipeline_run.info.run_id).data.metrics.items() if key in ("best_epoch", "best_val_loss", "restarts")}
logged_matches_history = from_mlflow == [{key: record[key] for key in from_mlflow[0]} for record in mlp.history]
print("logged for the pipeline's run:", summary, "; its curves are the model's history:", logged_matches_history)
figures = [plots.training_curves(from_mlflow, os.path.join(OUTPUT_DIR, "pipeline_curves.png"), metrics=("loss", "accuracy"))]
for rate, run_id in rate_runs.items():
    figures.append(plots.training_curves(logged_history(run_id), os.path.join(OUTPUT_DIR, f"curves_lr_{rate}.png"), metrics=("loss",)))
ipd.display(*(ipd.Image(filename=figure) for figure in figures))
