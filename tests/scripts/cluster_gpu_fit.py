"""Fit with 2 ranks on a standalone master whose worker offers 2 (fake) GPUs; print JSON.

argv: master URL, backend ("horovod" or "torch_distributor"), a directory of its own
(the training data goes to <dir>/data, the saved model to <dir>/model).

The application asks for 2 GPUs per executor and 1 per task, so each of the 2 concurrent
training tasks gets its own GPU address from Spark. Without CUDA here device="auto"
resolves to the CPU, and the model still records the address Spark assigned to each
rank's task.
"""

import json
import os
import sys
import time

from pyspark import TaskContext

from sparkneural.datasets import digits
from sparkneural.estimators import MLPClassifier, TorchModel
from sparkneural.session import get_spark

master, backend, work = sys.argv[1:4]
started = time.time()
spark = get_spark("sparkneural-gpu-scheduling-test", master=master, conf={
    "spark.ui.enabled": "false",
    "spark.pyspark.python": sys.executable,
    "spark.executor.memory": "2g",
    "spark.cores.max": "2",
    "spark.executor.cores": "2",
    "spark.executor.resource.gpu.amount": "2",
    "spark.task.resource.gpu.amount": "1",
    # a barrier stage submitted before the executor registers is retried after this (default 15 s)
    "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "1s",
    "spark.sparkneural.dataDir": "file://" + os.path.join(work, "data"),
})
spark.sparkContext.setLogLevel("ERROR")
seconds = {"session": time.time() - started}


def _task_gpus(_):
    resources = TaskContext.get().resources()
    yield list(resources["gpu"].addresses) if "gpu" in resources else None


# What Spark itself hands two concurrent tasks: a check of the cluster, independent of sparkneural.
sparkGpus = spark.sparkContext.parallelize(range(2), 2).barrier().mapPartitions(_task_gpus).collect()
seconds["sparkGpus"] = time.time() - started - sum(seconds.values())

data = digits(spark).limit(400).selectExpr("transform(features, v -> v / 16.0) AS features", "label")
model = MLPClassifier(hiddenLayers=[16], epochs=1, numProc=2, backend=backend, device="auto", verbose=0).fit(data)
seconds["fit"] = time.time() - started - sum(seconds.values())
model.save(os.path.join(work, "model"))
loaded = TorchModel.load(os.path.join(work, "model"))
print(json.dumps({
    "master": spark.sparkContext.master,
    "sparkGpus": sparkGpus,
    "rankDevices": model.rankDevices,
    "loadedRankDevices": loaded.rankDevices,
    "loadedClass": type(loaded).__name__,
    "seconds": seconds,
}))
spark.stop()
