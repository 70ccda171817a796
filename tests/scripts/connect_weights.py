"""A Spark Connect client that scores saved models and a BERT directory; prints one JSON line.

    connect_weights.py SPEC.json

SPEC names ``remote`` (e.g. "local-cluster[2,1,1024]"), ``rows`` (a .npy
float32 matrix, one row of features each), ``models`` (name -> saved model
directory, scored in that order in one session) and ``bert`` (``path``,
``texts`` and the Params to set). Needs SPARK_HOME (the executors start from
it) and PYSPARK_PYTHON. The work directory of the session's executors
(under SPARK_HOME/work) is removed at the end: it holds the shipped weights.
"""

import json
import os
import shutil
import sys
import time

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession


def score(spark, df, path: str) -> dict:
    from sparkneural.estimators import TorchModel

    started = time.perf_counter()
    model = TorchModel.load(path)
    loaded = time.perf_counter()
    scored = model.transform(df)  # adds the weights to the session
    shipped = time.perf_counter()
    plan_bytes = scored._plan.to_proto(spark.client).ByteSize()  # what the client sends to run it
    rows = scored.select("id", "probability", "prediction").orderBy("id").collect()
    return {
        "planBytes": plan_bytes,
        "seconds": {"load": loaded - started, "transform": shipped - loaded, "collect": time.perf_counter() - shipped},
        "probability": [r.probability.toArray().tolist() for r in rows],
        "prediction": [r.prediction for r in rows],
    }


def embed(spark, bert: dict) -> list:
    from sparkneural.text import BertEmbeddings

    texts = spark.createDataFrame(list(enumerate(bert["texts"])), "id int, text string")
    params = {k: v for k, v in bert.items() if k not in ("texts", "path")}
    embeddings = BertEmbeddings(inputCol="text", outputCol="features", modelPath=bert["path"], **params)
    return [r.features for r in embeddings.transform(texts).orderBy("id").collect()]


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    spark = SparkSession.builder.remote(spec["remote"]).getOrCreate()
    app = spark.conf.get("spark.app.id")
    try:
        x = np.load(spec["rows"])
        df = spark.createDataFrame(pd.DataFrame({"id": np.arange(len(x)), "features": list(x)})).repartition(2, "id")
        result = {
            "maxInboundMessageSize": spark.conf.get("spark.connect.grpc.maxInboundMessageSize"),
            "models": {name: score(spark, df, path) for name, path in spec["models"].items()},
            "bert": embed(spark, spec["bert"]),
        }
    finally:
        spark.stop()
        shutil.rmtree(os.path.join(os.environ["SPARK_HOME"], "work", app), ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
