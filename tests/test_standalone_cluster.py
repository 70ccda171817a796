"""sparkdl against a real standalone Spark cluster (master + one 2-core worker on 127.0.0.1)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyspark
import pytest

HERE = Path(__file__).resolve().parent
SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@pytest.fixture
def cluster(tmp_path):
    """Start a master and a worker; stop both afterwards, also when the test fails."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
           "SPARK_WORKER_DIR": str(tmp_path / "work"), "SPARK_LOG_DIR": str(tmp_path)}
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    processes = []
    try:
        processes.append(subprocess.Popen(
            [str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(_free_port())],
            env=env, stdout=open(tmp_path / "master.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        _wait_for_port(port, 60)
        processes.append(subprocess.Popen(
            [str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", url, "--cores", "2", "--memory", "3g",
             "--host", "127.0.0.1", "--webui-port", str(_free_port())],
            env=env, stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        yield url
    finally:
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.timeout(420)
def test_fit_with_two_horovod_ranks_and_transform_on_a_standalone_cluster(cluster):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run([sys.executable, str(HERE / "scripts" / "cluster_fit.py"), cluster],
                            capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["master"] == cluster
    assert len(figures["rankDigests"]) == 2 and len(set(figures["rankDigests"])) == 1
    assert figures["epochs"] == 4 and figures["accuracy"] > 0.8


@pytest.mark.timeout(420)
def test_spark_submit_runs_a_pipeline_on_the_standalone_cluster(cluster, tmp_path):
    output = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", cluster, "--total-executor-cores", "2",
               "pipelines/digits_mlp.py", "--conf", "conf/digits_mlp.yaml", f"output={output}",
               "model.epochs=5", "model.earlyStoppingPatience=null", "model.hiddenLayers=[32]"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["epochs_run"] == 5 and metrics["test_accuracy"] > 0.8
    assert any(p.name.startswith("app-") for p in (tmp_path / "work").iterdir())  # its executors ran on the worker
