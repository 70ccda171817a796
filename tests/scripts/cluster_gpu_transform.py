"""Stage-level resource profiles on a standalone master whose worker offers 2 (fake) GPUs; print JSON.

argv: master URL, a directory of its own (the training data goes to <dir>/data).

The application asks for 2 GPUs per executor but none per task, so its default profile's
tasks get no GPU address. Two parts, each recorded with its own error (None when it ran):

- "fit": 2 torch_distributor ranks with trainingResources={"gpus": 1}; the model's rankDevices.
- "transform": a model fitted on the driver scores with inferenceResources={"gpus": 1}; in the
  same stage (no shuffle after the scoring) a Python UDF records the GPU addresses of the task
  that scored each row. The same UDF on the same rows without transform runs with the
  default profile. Each scored row comes back with the addresses, its outputs, and the
  logits the fitted network computes for its features on the driver.
"""

import json
import os
import sys
import time
import traceback

import torch
from pyspark.sql import functions as F

from sparkneural.datasets import digits
from sparkneural.estimators import MLPClassifier
from sparkneural.session import get_spark

master, work = sys.argv[1:3]
started = time.time()
spark = get_spark("sparkneural-resource-profiles-test", master=master, conf={
    "spark.ui.enabled": "false",
    "spark.pyspark.python": sys.executable,
    "spark.executor.memory": "2g",
    "spark.cores.max": "2",
    "spark.executor.cores": "2",
    "spark.executor.resource.gpu.amount": "2",  # and no spark.task.resource.gpu.amount
    # a barrier stage submitted before the executor registers is retried after this (default 15 s)
    "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "1s",
    "spark.sparkneural.dataDir": "file://" + os.path.join(work, "data"),
})
spark.sparkContext.setLogLevel("ERROR")
seconds = {"session": time.time() - started}


@F.udf("array<string>")
def task_gpus(_):
    from pyspark import TaskContext

    resources = TaskContext.get().resources()
    return list(resources["gpu"].addresses) if "gpu" in resources else []


def part(name, run):
    began = time.time()
    try:
        return {"error": None, **run()}
    except Exception:  # noqa: BLE001 - the test shows it
        # without the JVM's stack frames, which would push the Python traceback out of the message
        lines = traceback.format_exc().splitlines()
        return {"error": "\n".join(line for line in lines if not line.startswith("\tat "))[-6000:]}
    finally:
        seconds[name] = time.time() - began


data = digits(spark).limit(400).selectExpr("transform(features, v -> v / 16.0) AS features", "label")


def fit():
    model = MLPClassifier(hiddenLayers=[16], epochs=1, numProc=2, backend="torch_distributor", device="auto",
                          trainingResources={"gpus": 1}, verbose=0).fit(data)
    return {"rankDevices": model.rankDevices}


def transform():
    model = MLPClassifier(hiddenLayers=[16], epochs=2, backend="local", verbose=0).fit(data)
    rows = data.limit(120).repartition(4).cache()
    scored = model.setInferenceResources({"gpus": 1}).transform(rows).withColumn("gpus", task_gpus("rawPrediction"))
    plain = rows.withColumn("gpus", task_gpus("features"))
    collected = scored.collect()
    with torch.inference_mode():  # the same rows through the fitted network on the driver
        logits = model.network()(torch.tensor([r.features for r in collected], dtype=torch.float32)).numpy()
    return {
        "scored": [dict(prediction=r.prediction, rawPrediction=r.rawPrediction.toArray().tolist(),
                        probability=r.probability.toArray().tolist(), gpus=r.gpus, logits=row.tolist())
                   for r, row in zip(collected, logits)],
        "plain": [r.gpus for r in plain.collect()],
    }


print(json.dumps({"master": spark.sparkContext.master, "fit": part("fit", fit), "transform": part("transform", transform),
                  "seconds": seconds}))
spark.stop()
