"""A Spark Connect client (``SPARK_REMOTE``) that trains digits on 2 ranks with each distributed backend.

argv[1] "fits" (argv[2]: where to save a pipeline): horovod, torch_distributor and auto, 5 epochs each,
a saved and loaded Pipeline and a CrossValidator; the client's listening TCP sockets are sampled
while they run. argv[1] "restart" (argv[2]: checkpoint directory): a horovod fit with
maxRestarts=1 during which this client SIGKILLs an executor of the Connect server once the first
checkpoint exists. Prints one JSON line with what it saw.
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from connect_server import listening_sockets  # noqa: E402

from pyspark.ml.evaluation import MulticlassClassificationEvaluator  # noqa: E402
from pyspark.ml import Pipeline, PipelineModel  # noqa: E402
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder  # noqa: E402

from sparkneural.datasets import digits  # noqa: E402
from sparkneural.estimators import MLPClassifier  # noqa: E402
from sparkneural.session import get_spark  # noqa: E402


def connect_executors() -> list[int]:
    """The executor JVMs of the tests' Connect server: their work directories lie under its "connect-server" directory."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if b"CoarseGrainedExecutorBackend" in (entry / "cmdline").read_bytes() and "connect-server" in os.readlink(entry / "cwd"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


class Tee:
    """This process's standard output, also kept in ``text``."""

    def __init__(self, stream):
        self.stream, self.text = stream, []

    def write(self, text):
        self.text.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


class SocketWatch(threading.Thread):
    """Samples this process's listening TCP sockets every 0.1 s until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen, self.samples, self.done = set(), 0, threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            self.seen.update(listening_sockets())
            self.samples += 1


output = sys.stdout = Tee(sys.stdout)
spark = get_spark("sparkneural-connect-training")
data = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label")
train, test = (part.cache() for part in data.randomSplit([0.8, 0.2], seed=1))
evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
estimator = MLPClassifier(hiddenLayers=[64], batchSize=32, epochs=5, learningRate=0.003, numProc=2)
figures = {"session": type(spark).__module__}

if sys.argv[1] == "fits":
    watch = SocketWatch()
    watch.start()
    for backend in ("horovod", "torch_distributor", "auto"):
        began = time.time()
        model = estimator.copy({estimator.backend: backend}).fit(train)
        figures[backend] = {"accuracy": evaluator.evaluate(model.transform(test)), "seconds": time.time() - began,
                            "ranks": len(model.rankDevices)}
    # A Pipeline with a 2-rank stage, saved twice over the same path, loaded, scores the same rows alike.
    fitted = Pipeline(stages=[estimator.copy({estimator.backend: "horovod", estimator.verbose: 0})]).fit(train)
    path = sys.argv[2]
    fitted.write().overwrite().save(path)
    fitted.write().overwrite().save(path)
    before = [(r["prediction"], r["probability"].toArray().tolist()) for r in fitted.transform(test).orderBy("features").collect()]
    after = [(r["prediction"], r["probability"].toArray().tolist()) for r in PipelineModel.load(path).transform(test).orderBy("features").collect()]
    figures["pipeline"] = {"rows": len(before), "identical": before == after,
                           "accuracy": evaluator.evaluate(PipelineModel.load(path).transform(test))}
    # CrossValidator: one materialisation for every param map, each fit a barrier stage of 2 ranks.
    grid = ParamGridBuilder().addGrid(estimator.epochs, [1, 3]).build()
    validator = CrossValidator(estimator=estimator.copy({estimator.backend: "horovod", estimator.verbose: 0}),
                               estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, seed=3)
    cv_model = validator.fit(train)
    figures["crossValidation"] = {"avgMetrics": list(cv_model.avgMetrics),
                                  "bestEpochs": cv_model.bestModel.getOrDefault("epochs")}
    watch.done.set()
    watch.join()
    figures["listening"] = sorted(watch.seen)
    figures["socketSamples"] = watch.samples
    figures["stdout"] = "".join(output.text)
else:
    checkpoints = Path(sys.argv[2])
    killed = {}

    def kill_when_checkpointed():
        while not (checkpoints / "checkpoint.pt").exists():  # the first epoch's
            time.sleep(0.1)
        victim = connect_executors()[0]
        os.kill(victim, signal.SIGKILL)
        killed.update(pid=victim, at=time.time())

    threading.Thread(target=kill_when_checkpointed, daemon=True).start()
    under_test = estimator.copy({estimator.backend: "horovod", estimator.epochs: 8, estimator.maxRestarts: 1,
                                 estimator.checkpointDir: str(checkpoints)})
    model = under_test.fit(train)
    figures.update(accuracy=evaluator.evaluate(model.transform(test)), killed=killed, restarts=model.restarts,
                   history=[h["epoch"] for h in model.history])
print(json.dumps(figures, default=str), flush=True)
