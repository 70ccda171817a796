"""Spark's GPU scheduling on a real standalone cluster on 127.0.0.1, with fake GPUs.

One 2-core worker offers GPUs "0" and "1" (a discovery script); the application asks for
2 GPUs per executor and 1 per task. A 2-rank fit must record, in ``model.rankDevices``,
the distinct address Spark assigned to each rank's task. Without CUDA here every rank
computes on the CPU (device="auto").
"""

import json
import os
import subprocess
import sys

import pytest

from test_standalone_cluster import HERE, _standalone

DISCOVERY = '#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0","1"]}\'\n'


@pytest.fixture
def gpu_cluster(tmp_path, monkeypatch):
    """A master and one 2-core worker whose 2 GPUs a discovery script reports."""
    script = tmp_path / "gpu_discovery.sh"
    script.write_text(DISCOVERY)
    script.chmod(0o755)
    # spark-class passes SPARK_WORKER_OPTS to the Worker's JVM (and the Master ignores it).
    monkeypatch.setenv("SPARK_WORKER_OPTS", f"-Dspark.worker.resource.gpu.amount=2 -Dspark.worker.resource.gpu.discoveryScript={script}")
    with _standalone(tmp_path, [2]) as (url, _):
        yield url


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["horovod", "torch_distributor"])
def test_each_rank_records_the_distinct_gpu_address_spark_assigned_its_task(gpu_cluster, tmp_path, backend):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the GPUs here are fake: with CUDA the ranks would compute on real GPUs under these addresses")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("SPARK_WORKER_OPTS")
    result = subprocess.run([sys.executable, str(HERE / "scripts" / "cluster_gpu_fit.py"), gpu_cluster, backend, str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=280)
    # without the JVM's stack frames, which would push the Python traceback out of the message
    assert result.returncode == 0, "\n".join(line for line in result.stderr.splitlines() if not line.startswith("\tat "))[-6000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
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
