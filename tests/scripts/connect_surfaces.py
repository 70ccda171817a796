"""What a user touches, from a Spark Connect client (SPARK_REMOTE); prints one JSON object last.

argv[1] is a scratch directory. Gathers, in one client process: get_spark
and the settings the server refused, digits and its split, ``sparkneural run
digits_mlp --remote``, a Pipeline fitted, saved twice with overwrite, loaded
and scored, a CrossValidator, read_wav with an empty file; then the sockets
this process listens on and the processes it started.
"""

import io
import json
import os
import sys
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for connect_server

from connect_server import listening_sockets  # noqa: E402
from pyspark.ml import Pipeline, PipelineModel  # noqa: E402
from pyspark.ml.evaluation import MulticlassClassificationEvaluator  # noqa: E402
from pyspark.ml.feature import StandardScaler  # noqa: E402
from pyspark.ml.tuning import CrossValidator, CrossValidatorModel, ParamGridBuilder  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from sparkneural import cli  # noqa: E402
from sparkneural import session  # noqa: E402
from sparkneural.data.audio import read_wav, write_wav  # noqa: E402
from sparkneural.datasets import digits, digits_split  # noqa: E402
from sparkneural.estimators import MLPClassifier  # noqa: E402

scratch = Path(sys.argv[1])
found = {}
started = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    spark = session.get_spark("sparkneural-connect-test")
found["startWarnings"] = [str(w.message) for w in caught if "pandas" not in str(w.message)]
found["sessionClass"] = f"{type(spark).__module__}.{type(spark).__name__}"
found["sameSessionAgain"] = session.get_spark() is spark
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    session._connect_to_server("again", os.environ["SPARK_REMOTE"],
                               {"spark.executor.memory": "2g", "spark.sql.shuffle.partitions": "5"})
found["refusedWarnings"] = [str(w.message) for w in caught if "pandas" not in str(w.message)]
found["shufflePartitions"] = spark.conf.get("spark.sql.shuffle.partitions")
spark.conf.set("spark.sql.shuffle.partitions", "8")
found["master"] = spark.conf.get("spark.master")
found["arrow"] = spark.conf.get("spark.sql.execution.arrow.pyspark.enabled")

rows = digits(spark).withColumn("partition", F.spark_partition_id()).collect()
found["digits"] = [[r.partition, r.label, [float(v) for v in r.features]] for r in rows]
labelled, test = digits_split(spark, (0.8, 0.1, 0.1), seed=7)
found["splitTestLabels"] = sorted(r.label for r in test.select("label").collect())

output = scratch / "digits_mlp"
with redirect_stdout(io.StringIO()) as printed:
    found["cliExit"] = cli.main(["run", "digits_mlp", "--conf", "conf/digits_mlp.yaml", "--remote", os.environ["SPARK_REMOTE"],
                                 f"output={output}", "model.backend=local", "model.numProc=1", "model.epochs=2",
                                 "model.hiddenLayers=[16]", "model.earlyStoppingPatience=null"])
found["cliOutput"] = printed.getvalue()[-2000:]
found["cliMetrics"] = json.loads((output / "metrics.json").read_text())

pipeline = Pipeline(stages=[
    StandardScaler(inputCol="pixels", outputCol="features", withMean=True, withStd=True),
    MLPClassifier(hiddenLayers=[32], epochs=3, learningRate=0.01, backend="local", numProc=1, seed=3, verbose=0),
])
train = labelled.where(~F.col("isValidation"))
model = pipeline.fit(train)
path = str(scratch / "pipeline")
model.write().overwrite().save(path)
model.write().overwrite().save(path)
loaded = PipelineModel.load(path)


test = test.withColumn("rowId", F.monotonically_increasing_id())
before = model.transform(test).select("rowId", "prediction", "probability").orderBy("rowId").collect()
after = loaded.transform(test).select("rowId", "prediction", "probability").orderBy("rowId").collect()
found["predictionsBefore"] = [[r.rowId, r.prediction, list(map(float, r.probability))] for r in before]
found["predictionsAfter"] = [[r.rowId, r.prediction, list(map(float, r.probability))] for r in after]
found["savedStages"] = sorted(p.name for p in (Path(path) / "stages").iterdir())
found["labelsOfTest"] = [r.label for r in test.orderBy("rowId").select("label").collect()]

scaled = StandardScaler(inputCol="pixels", outputCol="features").fit(train).transform(train)
classifier = MLPClassifier(hiddenLayers=[16], epochs=2, backend="local", numProc=1, seed=1, verbose=0)
grid = ParamGridBuilder().addGrid(classifier.learningRate, [0.001, 0.01]).build()
tuned = CrossValidator(estimator=classifier, estimatorParamMaps=grid, numFolds=2, seed=5,
                       evaluator=MulticlassClassificationEvaluator(metricName="accuracy")).fit(scaled)
found["crossValidatorModel"] = type(tuned).__name__
found["crossValidatorMetrics"] = list(map(float, tuned.avgMetrics))
found["crossValidatorBestIsMLP"] = type(tuned.bestModel).__name__

audio = scratch / "audio"
write_wav([0.0, 0.5, -0.5], audio / "tone.wav", sampleRate=8000)
(audio / "silent.wav").write_bytes(b"")
try:
    read_wav(spark, str(audio))
    found["emptyWavError"] = None
except ValueError as error:
    found["emptyWavError"] = str(error)
(audio / "silent.wav").unlink()
found["wavSamples"] = [r.numSamples for r in read_wav(spark, str(audio)).collect()]

found["listening"] = listening_sockets()
found["children"] = sorted({int(c) for task in Path("/proc/self/task").iterdir()
                            for c in (task / "children").read_text().split()})
found["seconds"] = round(time.perf_counter() - started, 1)
found["isCrossValidatorModel"] = isinstance(tuned, CrossValidatorModel)
print(json.dumps(found))
