"""Spark's GPU scheduling on a real standalone cluster on 127.0.0.1, with fake GPUs.

One 2-core worker offers GPUs "0" and "1" (a discovery script). When the application asks
for 2 GPUs per executor and 1 per task, a 2-rank fit must record, in ``model.rankDevices``,
the distinct address Spark assigned to each rank's task. When it asks for none per task,
``trainingResources`` and ``inferenceResources`` ask for them for the training and scoring
stages alone. Without CUDA here every rank and scoring task computes on the CPU
(device="auto").
"""

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from test_standalone_cluster import HERE, _standalone

DISCOVERY = '#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0","1"]}\'\n'


@contextlib.contextmanager
def _gpu_standalone(tmp_path):
    """A master and one 2-core worker whose 2 GPUs a discovery script reports; yields the master URL."""
    script = tmp_path / "gpu_discovery.sh"
    script.write_text(DISCOVERY)
    script.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        # spark-class passes SPARK_WORKER_OPTS to the Worker's JVM (and the Master ignores it).
        patch.setenv("SPARK_WORKER_OPTS", f"-Dspark.worker.resource.gpu.amount=2 -Dspark.worker.resource.gpu.discoveryScript={script}")
        with _standalone(tmp_path, [2]) as (url, _):
            patch.delenv("SPARK_WORKER_OPTS")
            yield url


def _run_script(name, *args):
    """Run tests/scripts/<name> as a driver of its own; the JSON it prints last."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run([sys.executable, str(HERE / "scripts" / name), *args], capture_output=True, text=True, env=env, timeout=280)
    # without the JVM's stack frames, which would push the Python traceback out of the message
    assert result.returncode == 0, "\n".join(line for line in result.stderr.splitlines() if not line.startswith("\tat "))[-6000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _skip_with_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("the GPUs here are fake: with CUDA the ranks would compute on real GPUs under these addresses")


@pytest.fixture
def gpu_cluster(tmp_path):
    with _gpu_standalone(tmp_path) as url:
        yield url


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["horovod", "torch_distributor"])
def test_each_rank_records_the_distinct_gpu_address_spark_assigned_its_task(gpu_cluster, tmp_path, backend):
    _skip_with_cuda()
    figures = _run_script("cluster_gpu_fit.py", gpu_cluster, backend, str(tmp_path))
    print(backend, "seconds:", figures["seconds"])  # visible with pytest -s
    assert figures["master"] == gpu_cluster
    # the cluster does schedule the fake GPUs: two concurrent tasks get one address each
    assert sorted(map(tuple, figures["sparkGpus"])) == [("0",), ("1",)], figures["sparkGpus"]

    ranks = figures["rankDevices"]
    assert len(ranks) == 2, ranks
    assert {r["rank"] for r in ranks} == {0, 1}, ranks
    assert all(set(r) == {"rank", "host", "device", "gpuAddress"} for r in ranks), ranks
    assert all(r["device"] == "cpu" for r in ranks), ranks  # no CUDA here: device="auto" is the CPU
    assert sorted(r["gpuAddress"] for r in ranks if r["gpuAddress"] is not None) == ["0", "1"], ranks
    assert all(r["host"] == "127.0.0.1" for r in ranks), ranks  # the ranks ran on the worker's executor

    assert figures["loadedClass"] == "MLPClassifierModel"
    assert sorted(figures["loadedRankDevices"], key=lambda r: r["rank"]) == sorted(ranks, key=lambda r: r["rank"])


@pytest.fixture(scope="module")
def profiled_stages(tmp_path_factory):
    """One run of tests/scripts/cluster_gpu_transform.py: an application whose tasks ask for no GPU, with a
    trainingResources fit and an inferenceResources transform (each part's error, or its records)."""
    import pyspark

    if int(pyspark.__version__.split(".")[0]) < 4:
        pytest.skip("pyspark 3.5's mapInArrow takes no resource profile")
    _skip_with_cuda()
    tmp_path = tmp_path_factory.mktemp("profiles")
    with _gpu_standalone(tmp_path) as url:
        figures = _run_script("cluster_gpu_transform.py", url, str(tmp_path))
    print("seconds:", figures["seconds"])  # visible with pytest -s
    assert figures["master"] == url
    return figures


@pytest.mark.timeout(300)
def test_with_training_resources_each_rank_gets_its_own_gpu_where_the_default_profile_asks_none(profiled_stages):
    fit = profiled_stages["fit"]
    assert fit["error"] is None, fit["error"]
    ranks = fit["rankDevices"]
    assert sorted(r["rank"] for r in ranks) == [0, 1], ranks
    assert all(r["device"] == "cpu" for r in ranks), ranks  # no CUDA here: device="auto" is the CPU
    assert sorted(r["gpuAddress"] for r in ranks) == ["0", "1"], ranks


@pytest.mark.timeout(300)
def test_with_inference_resources_each_scoring_task_gets_a_gpu_and_scores_as_the_network_does(profiled_stages):
    transform = profiled_stages["transform"]
    assert transform["error"] is None, transform["error"]
    scored, plain = transform["scored"], transform["plain"]
    assert len(scored) == 120 and len(plain) == 120
    # the default profile's tasks get no GPU: the application asks for none per task
    assert all(gpus == [] for gpus in plain), plain
    print("rows per GPU address of the scoring task:", dict(Counter(a for row in scored for a in row["gpus"])),
          "; rows with a GPU address under the default profile:", sum(bool(gpus) for gpus in plain))  # pytest -s
    # every row was scored by a task that Spark gave one GPU address
    assert all(len(row["gpus"]) == 1 and row["gpus"][0] in ("0", "1") for row in scored), [row["gpus"] for row in scored]
    # and scored as the fitted network computes on the driver: MLlib's columns from its logits
    logits = np.array([row["logits"] for row in scored])
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    centered = logits - logits.mean(axis=1, keepdims=True)  # sparkneural's rawPrediction: the logits less their mean
    np.testing.assert_allclose([row["rawPrediction"] for row in scored], centered, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([row["probability"] for row in scored], probabilities, rtol=1e-4, atol=1e-6)
    assert [row["prediction"] for row in scored] == logits.argmax(axis=1).astype(float).tolist()
