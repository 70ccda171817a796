"""trainingResources / inferenceResources: what a task asks Spark for, as a stage-level ResourceProfile.

``check_resources`` refuses what Spark's ``TaskResourceRequest`` would, naming the Param;
``task_profile`` builds the profile on a classic session and on a Spark Connect client; a fit
refuses a profile it cannot run before any Spark job. The profile reaching real tasks is shown
here on a Connect client (``TaskContext.cpus()``) and in ``test_gpu_scheduling`` with GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyspark
import pytest

from sparkneural import cluster
from sparkneural.estimators import MLPClassifier
from test_bad_input import no_spark_job

PARAMS = ("trainingResources", "inferenceResources")
SPARK4 = int(pyspark.__version__.split(".")[0]) >= 4
NEEDS_SPARK4 = pytest.mark.skipif(not SPARK4, reason="pyspark 3.5's mapInArrow takes no resource profile")


@pytest.mark.parametrize("value", [None, {"cpus": 2}, {"gpus": 1}, {"gpus": 0.25}, {"gpus": 0.5}, {"cpus": 1, "gpus": 2}])
def test_check_resources_accepts_what_spark_accepts(value):
    for name in PARAMS:
        cluster.check_resources(name, value)  # no error


@pytest.mark.parametrize("value, message", [
    ({}, "a dict with the keys 'cpus' and/or 'gpus', found {}"),
    ({"memory": 1}, "a dict with the keys 'cpus' and/or 'gpus', found {'memory': 1}"),
    ({"gpu": 1}, "a dict with the keys 'cpus' and/or 'gpus', found {'gpu': 1}"),
    ({"cpus": 0}, "'cpus' to be an integer >= 1, found 0"),
    ({"cpus": 1.5}, "'cpus' to be an integer >= 1, found 1.5"),
    ({"cpus": True}, "'cpus' to be an integer >= 1, found True"),
    ({"gpus": 0}, "'gpus' to be a number > 0, whole or at most 0.5 .*, found 0"),
    ({"gpus": -1}, "'gpus' to be a number > 0, whole or at most 0.5 .*, found -1"),
    ({"gpus": 0.75}, "'gpus' to be a number > 0, whole or at most 0.5 .*, found 0.75"),
    ({"gpus": 1.5}, "'gpus' to be a number > 0, whole or at most 0.5 .*, found 1.5"),
    ({"gpus": float("inf")}, "'gpus' to be a number > 0, whole or at most 0.5 .*, found inf"),
    ({"gpus": "1"}, "'gpus' to be a number > 0, whole or at most 0.5 .*, found '1'"),
])
def test_check_resources_names_the_param_and_what_it_expected(value, message):
    for name in PARAMS:
        with pytest.raises(ValueError, match=f"^{name}: expected {message}"):
            cluster.check_resources(name, value)


def test_a_bad_value_set_on_the_estimator_is_refused_by_fit_before_any_job(spark, digits_df):
    estimator = MLPClassifier(trainingResources={"gpus": 0.7}, numProc=2, backend="torch_distributor", epochs=1, verbose=0)
    with no_spark_job(spark), pytest.raises(ValueError, match=r"^trainingResources: expected 'gpus' .*found 0\.7"):
        estimator.fit(digits_df)


def test_no_task_profile_without_resources():
    assert cluster.task_profile(None) is None


def _amounts(profile) -> dict[str, float]:
    return {name: request.amount for name, request in profile.taskResources.items()}


def test_the_profile_built_on_a_classic_session_asks_each_task_for_the_amounts(spark):
    profile = cluster.task_profile({"cpus": 2, "gpus": 0.5})
    assert profile._java_resource_profile is not None  # made in the session's JVM
    assert _amounts(profile) == {"cpus": 2, "gpu": 0.5}
    assert profile.executorResources == {}  # a task-only profile: it runs on the executors there are
    assert _amounts(cluster.task_profile({"gpus": 1})) == {"gpu": 1}  # its tasks: spark.task.cpus
    # a barrier stage's profile names its cpus: where resources give none, default_cpus
    assert _amounts(cluster.task_profile({"gpus": 1}, default_cpus=3)) == {"cpus": 3, "gpu": 1}
    assert _amounts(cluster.task_profile({"cpus": 2}, default_cpus=3)) == {"cpus": 2}


def test_a_fit_refuses_a_training_profile_it_cannot_run_before_any_job(spark, digits_df):
    common = dict(backend="torch_distributor", epochs=1, verbose=0)
    cases = [
        (dict(backend="local", numProc=None), r"^trainingResources: backend 'local' trains on the driver"),
        (dict(numProc=None), r"^numProc: expected the number of ranks with trainingResources=\{'gpus': 1\}"),
        (dict(numProc=1), r"^trainingResources: needs a cluster manager .*found the local master 'local\[2\]'" if SPARK4
         else r"^trainingResources: needs Spark 4 \(pyspark 3\.5\.\d+'s mapInArrow takes no resource profile\)"),
    ]
    for params, message in cases:
        estimator = MLPClassifier(**{**common, **params}, trainingResources={"gpus": 1})
        with no_spark_job(spark), pytest.raises(ValueError, match=message):
            estimator.fit(digits_df)


def test_the_ranks_torch_threads_are_the_cpus_the_training_profile_asks():
    from sparkneural.estimators.base import FitPlan
    from sparkneural.training.tasks import get_task

    plan = FitPlan(None, get_task("classification"), (4,), 2, 2, "mlp", {"hiddenLayers": [3]})
    estimator = MLPClassifier(numProc=2, backend="torch_distributor")
    assert estimator._spec(None, plan).threads is None  # the ranks share their host's cores
    assert estimator.setTrainingResources({"cpus": 3, "gpus": 1})._spec(None, plan).threads == 3
    assert estimator.setTrainingResources({"gpus": 1})._spec(None, plan).threads is None


class _Conf:
    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


class _Session:  # what check_profile_support reads of a session: spark.conf
    def __init__(self, **values):
        self.conf = _Conf(values)


@NEEDS_SPARK4
@pytest.mark.parametrize("conf, resources, message", [
    ({"spark.master": "local[*]"}, {"cpus": 1}, "needs a cluster manager with stage-level scheduling .*'local\\[\\*\\]'"),
    ({"spark.master": "local"}, {"cpus": 1}, "needs a cluster manager"),
    ({"spark.master": "yarn"}, {"gpus": 1}, r"asks 1 GPU\(s\) per task, but each executor offers 0 \(spark.executor.resource.gpu.amount"),
    ({"spark.master": "spark://m:7077", "spark.executor.resource.gpu.amount": "1"}, {"gpus": 2}, "asks 2 GPU.* offers 1 "),
])
def test_a_profile_the_cluster_cannot_schedule_is_refused_naming_the_param(conf, resources, message):
    with pytest.raises(ValueError, match=f"^inferenceResources: {message}"):
        cluster.check_profile_support("inferenceResources", resources, _Session(**conf))


@NEEDS_SPARK4
@pytest.mark.parametrize("conf, resources", [
    ({"spark.master": "local-cluster[1,2,1024]"}, {"cpus": 2}),
    ({"spark.master": "k8s://x", "spark.executor.resource.gpu.amount": "1"}, {"gpus": 0.25}),
    ({"spark.master": "spark://m:7077", "spark.executor.resource.gpu.amount": "2"}, {"gpus": 2}),
])
def test_a_profile_the_cluster_can_schedule_passes(conf, resources):
    cluster.check_profile_support("trainingResources", resources, _Session(**conf))  # no error


@pytest.mark.skipif(SPARK4, reason="Spark 4 runs stage-level profiles")
def test_before_spark_4_any_profile_is_refused_naming_the_param():
    with pytest.raises(ValueError, match=r"^inferenceResources: needs Spark 4 \(pyspark 3\.5\.\d+'s mapInArrow takes no"):
        cluster.check_profile_support("inferenceResources", {"cpus": 1}, _Session(**{"spark.master": "spark://m:7077"}))


# A Connect client (pyspark's own local-cluster server, one executor with 2 cores): a stage with the
# profile's tasks sees 2 CPUs each, a stage with the default profile 1; the profile is built with
# no JVM on the client and registered on the server when the stage runs.
CONNECT_CLIENT = """
import json, sys
import pyarrow as pa
from pyspark.sql import SparkSession
from sparkneural import cluster

spark = SparkSession.builder.remote("local-cluster[1,2,1024]").config("spark.ui.enabled", "false").getOrCreate()

def cpus(batches):
    from pyspark import TaskContext
    for _ in batches:
        pass
    yield pa.RecordBatch.from_pydict({"cpus": [TaskContext.get().cpus()]})

try:
    profile = cluster.task_profile({"cpus": 2})
    ranks = spark.range(2, numPartitions=2)
    print(json.dumps({
        "jvm": profile._java_resource_profile is not None,
        "default": [r.cpus for r in ranks.mapInArrow(cpus, "cpus LONG").collect()],
        "profile": [r.cpus for r in ranks.mapInArrow(cpus, "cpus LONG", profile=profile).collect()],
        # as the fit launches its ranks: a barrier stage (one task: the executor has one 2-CPU slot)
        "barrier": [r.cpus for r in spark.range(1, numPartitions=1)
                    .mapInArrow(cpus, "cpus LONG", barrier=True, profile=profile).collect()],
    }))
finally:
    spark.stop()
"""


@NEEDS_SPARK4
@pytest.mark.timeout(240)
def test_on_a_connect_client_the_profiles_tasks_get_the_cpus_it_asks():
    env = {**os.environ, "SPARK_HOME": os.path.dirname(pyspark.__file__), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run([sys.executable, "-c", CONNECT_CLIENT], capture_output=True, text=True, env=env, timeout=220)
    assert result.returncode == 0, "\n".join(line for line in result.stderr.splitlines() if not line.startswith("\tat "))[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"jvm": False, "default": [1, 1], "profile": [2, 2], "barrier": [2]}, found
