# Databricks notebook source
# MAGIC %md
# MAGIC # Forecasting sensor readings with an LSTM
# MAGIC
# MAGIC Time series usually arrive in *long format*: one row per sensor and time
# MAGIC step. This notebook turns such a table into training examples and fits a
# MAGIC recurrent network to forecast the next reading:
# MAGIC
# MAGIC 1. generate noisy periodic readings for a few sensors as a Spark job;
# MAGIC 2. cut every sensor's series into windows of 24 consecutive steps with
# MAGIC    `SequenceWindower` (a window never mixes two sensors), each labelled with
# MAGIC    the value that follows it;
# MAGIC 3. split by time: the earlier part of every series trains, the later part tests;
# MAGIC 4. train an LSTM (`RNNRegressor`) with Horovod;
# MAGIC 5. compare its error with the naive forecast "the next value equals the last one".

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

    spark = get_spark("sparkneural-timeseries-lstm", master="local[2]", conf={"spark.ui.enabled": "false"})
print("Spark", spark.version, "on", spark.conf.get("spark.master"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Parameters
# MAGIC
# MAGIC The defaults train on 4 sensors x 2,000 steps for 10 epochs with Horovod
# MAGIC on two ranks. `SPARKNEURAL_NOTEBOOK_SMALL=1` gives a quick run (shorter
# MAGIC series, one local process, fewer epochs); `SPARKNEURAL_NOTEBOOK_BACKEND` and
# MAGIC `SPARKNEURAL_NOTEBOOK_EPOCHS` override one setting each.

# COMMAND ----------

import os
import tempfile

SMALL = os.environ.get("SPARKNEURAL_NOTEBOOK_SMALL", "0") == "1"
BACKEND = os.environ.get("SPARKNEURAL_NOTEBOOK_BACKEND", "local" if SMALL else "horovod")
NUM_PROC = 1 if BACKEND == "local" else 2
EPOCHS = int(os.environ.get("SPARKNEURAL_NOTEBOOK_EPOCHS", 3 if SMALL else 10))
SENSORS = 4
STEPS = 500 if SMALL else 2000  # readings per sensor
NOISE = 0.05
WINDOW = 24  # time steps the network sees
TEST_FRACTION = 0.2  # the last 20 % of every series
SEED = 3
OUTPUT_DIR = os.environ.get("SPARKNEURAL_NOTEBOOK_OUTPUT", os.path.join(tempfile.gettempdir(), "sparkneural-notebooks"))
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "timeseries_lstm")
print(f"backend={BACKEND} ranks={NUM_PROC} epochs={EPOCHS} steps={STEPS} output={OUTPUT_DIR}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Readings in long format
# MAGIC
# MAGIC Each sensor follows a sine wave with its own period (20, 25, 30, ... steps)
# MAGIC and phase, plus Gaussian noise. The table has one row per reading:
# MAGIC `sensor`, time step `t` and `value`. With real data this would be a
# MAGIC `spark.read` of Parquet or Delta.

# COMMAND ----------

import math

from pyspark.sql import functions as F

readings = (
    spark.range(SENSORS * STEPS)
    .select((F.col("id") % SENSORS).alias("sensor"), (F.col("id") / SENSORS).cast("long").alias("t"))
    .withColumn("period", 20.0 + 5.0 * F.col("sensor"))
    .withColumn("value", F.sin(2 * math.pi * F.col("t") / F.col("period") + F.col("sensor")) + NOISE * F.randn(SEED))
    .drop("period")
)
readings.orderBy("t", "sensor").show(6)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Windows per sensor
# MAGIC
# MAGIC `SequenceWindower` is a Spark Transformer (no torch involved). It gathers
# MAGIC each sensor's readings in `t` order and emits one row per window: the
# MAGIC `features` array holds 24 consecutive values, `label` the value one step
# MAGIC after the window, and `t` the window's first time step. It runs as an
# MAGIC ordinary Spark job, sensors in parallel.

# COMMAND ----------

from sparkneural.preprocessing import SequenceWindower

windower = SequenceWindower(
    inputCols=["value"], orderCol="t", seriesCol="sensor", windowSize=WINDOW, step=1, targetMode="value", horizon=1
)
windows = windower.transform(readings).cache()
windows.select("sensor", "t", F.slice("features", 1, 4).alias("first 4 of 24 values"), "label").show(3, truncate=False)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Split by time
# MAGIC
# MAGIC Random splits leak the future into training for time series. Here every
# MAGIC window whose label lies before the cut-off trains, and every window that
# MAGIC starts after it tests, so no test reading was ever seen in training.

# COMMAND ----------

cutoff = int(STEPS * (1 - TEST_FRACTION))
train = windows.where(F.col("t") + WINDOW < cutoff)
test = windows.where(F.col("t") >= cutoff)
print(f"{train.count()} training windows, {test.count()} test windows (cut-off at t = {cutoff})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train the LSTM
# MAGIC
# MAGIC `inputShape=[24, 1]` tells `RNNRegressor` to read each flat array as 24 time
# MAGIC steps of one feature. The network is one LSTM layer of 32 units whose last
# MAGIC hidden state feeds a linear output; `cell` switches to `gru`, `rnn` or a
# MAGIC peephole LSTM, and `numLayers` / `bidirectional` stack or reverse it.

# COMMAND ----------

from sparkneural.estimators import RNNRegressor

lstm = RNNRegressor(
    inputShape=[WINDOW, 1],
    cell="lstm",
    hiddenSize=32,
    epochs=EPOCHS,
    batchSize=64,
    learningRate=0.005,
    backend=BACKEND,
    numProc=NUM_PROC,
    seed=SEED,
    verbose=0,
).fit(train)
print(lstm.history[-1])

# COMMAND ----------

# MAGIC %md
# MAGIC ## Forecast error against the naive forecast
# MAGIC
# MAGIC `transform` adds a `prediction` column, so MLlib's `RegressionEvaluator`
# MAGIC gives the RMSE. The naive forecast repeats the window's last value; a
# MAGIC useful model has to beat it.

# COMMAND ----------

from pyspark.ml.evaluation import RegressionEvaluator

forecasts = lstm.transform(test).withColumn("lastValue", F.element_at("features", -1)).cache()
rmse = RegressionEvaluator(metricName="rmse").evaluate(forecasts)
naive_rmse = RegressionEvaluator(metricName="rmse", predictionCol="lastValue").evaluate(forecasts)
print(f"LSTM RMSE {rmse:.4f}, naive last-value RMSE {naive_rmse:.4f} ({rmse / naive_rmse:.2f}x)")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Plots
# MAGIC
# MAGIC The training curves, and one sensor's test period: the readings, the
# MAGIC LSTM's one-step forecasts and the naive forecast. Small collected data is
# MAGIC plotted with plain matplotlib.

# COMMAND ----------

import IPython.display as ipd
import matplotlib.pyplot as plt

from sparkneural import plots

ipd.display(ipd.Image(filename=plots.training_curves(lstm.history, os.path.join(OUTPUT_DIR, "training_curves.png"), metrics=("loss", "rmse"))))

one = forecasts.where("sensor = 0").orderBy("t").select("t", "label", "prediction", "lastValue").limit(120).toPandas()
step = one["t"] + WINDOW  # the time step each label belongs to
figure, ax = plt.subplots(figsize=(9, 3.5))
ax.plot(step, one["label"], ".", color="black", markersize=4, label="reading")
ax.plot(step, one["prediction"], label="LSTM forecast")
ax.plot(step, one["lastValue"], alpha=0.6, label="naive forecast")
ax.set_xlabel("time step")
ax.set_ylabel("value")
ax.set_title("Sensor 0, test period: one-step-ahead forecasts")
ax.legend()
plt.show()
