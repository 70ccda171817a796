"""sparkneural against a real standalone Spark cluster on 127.0.0.1: a master and one 2-core worker, or two 1-core workers."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from spark_cluster import standalone as _standalone

HERE = Path(__file__).resolve().parent


@pytest.fixture
def cluster(tmp_path):
    """A master and one 2-core worker."""
    with _standalone(tmp_path, [2]) as (url, _):
        yield url


@pytest.fixture
def two_workers(tmp_path):
    """A master and two 1-core workers: each rank's executor on its own worker."""
    with _standalone(tmp_path, [1, 1]) as started:
        yield started


def _executors_of(worker_pids):
    """The pids of the executor JVMs the workers launched (spark-class execs the worker's JVM)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent in worker_pids and b"CoarseGrainedExecutorBackend" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(420)
def test_fit_with_two_horovod_ranks_and_transform_on_a_standalone_cluster(cluster):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run([sys.executable, str(HERE / "scripts" / "cluster_fit.py"), cluster],
                            capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["master"] == cluster
    assert len(figures["rankDigests"]) == 2 and len(set(figures["rankDigests"])) == 1
    # Logistic regression on this split: 0.965; this fit, seeds 0-2: 0.974-0.983.
    assert figures["epochs"] == 10 and figures["accuracy"] >= 0.93


@pytest.mark.timeout(420)
def test_spark_submit_runs_a_pipeline_on_the_standalone_cluster(cluster, tmp_path):
    output = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", cluster, "--total-executor-cores", "2",
               "pipelines/digits_mlp.py", "--conf", "conf/digits_mlp.yaml", f"output={output}",
               "model.epochs=20", "model.learningRate=0.003", "model.earlyStoppingPatience=null", "model.hiddenLayers=[32]"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    # Logistic regression on this split: 0.947; this pipeline, seeds 0-2 and 7: 0.958-0.963.
    assert metrics["epochs_run"] == 20 and metrics["test_accuracy"] >= 0.9
    assert any(p.name.startswith("app-") for p in (tmp_path / "work").iterdir())  # its executors ran on the worker


def _submit_and_kill(url, workers, tmp_path, epochs, max_restarts):
    """Run tests/scripts/cluster_restart.py; kill one executor when the fit under test prints epoch 3.

    Returns (all output lines, the lines from the fit under test on, the JSON figures, when the kill was sent).
    """
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", url, "--total-executor-cores", "2",
               "--executor-memory", "2g", "--conf", "spark.ui.enabled=false", "--conf", f"spark.pyspark.python={sys.executable}",
               str(HERE / "scripts" / "cluster_restart.py"), "horovod", str(epochs), str(tmp_path / "checkpoints"), str(max_restarts)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent, env=env)
    lines, under_test, killed_at = [], False, None
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            under_test = under_test or line.startswith("fit under test")
            if under_test and killed_at is None and line.startswith("epoch 3/"):
                os.kill(max(_executors_of(workers)), signal.SIGKILL)
                killed_at = time.time()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    output = "\n".join(lines)
    assert process.returncode == 0 and killed_at is not None, output[-4000:]
    figures = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    return lines, lines[lines.index("fit under test"):], figures, killed_at


@pytest.mark.timeout(600)
def test_an_executor_killed_mid_fit_is_replaced_and_the_fit_finishes_as_if_uninterrupted(two_workers, tmp_path, report):
    """spark-submit runs the same fit twice; during the second, at epoch 3, one executor is killed with SIGKILL."""
    epochs = 8
    lines, after, figures, killed_at = _submit_and_kill(*two_workers, tmp_path, epochs, max_restarts=2)
    output = "\n".join(lines)
    # every epoch line reaches spark-submit's output, from whichever executor rank 0 ran on
    for epoch in range(1, epochs + 1):
        assert any(line.startswith(f"epoch {epoch}/{epochs}  loss") for line in after), f"epoch {epoch} missing:\n{output[-4000:]}"
    restart_lines = [line for line in after if line.startswith("sparkneural: rank")]
    assert len(restart_lines) == 1, output[-4000:]
    match = re.match(r"sparkneural: rank [01] on executor \d+ \(127\.0\.0\.1\) was lost: Spark removed executor \d+: "
                     r"Command exited with code 137 \(signal 9, SIGKILL\); restart 1 of 2: waiting for 2 task slots, "
                     r"then the ranks resume after epoch (\d+)$", restart_lines[0])
    assert match, restart_lines[0]
    resumed_after = int(match.group(1))  # 3, or later if an epoch ended between the line and the kill
    assert 3 <= resumed_after < epochs
    assert figures["history"] == list(range(1, epochs + 1)) and figures["epochsRun"] == list(range(1, epochs + 1))
    assert figures["differentWeights"] == [], figures["differentWeights"]  # every tensor bit for bit
    assert abs(figures["restartedAccuracy"] - figures["uninterruptedAccuracy"]) <= 0.01
    (restart,) = figures["restarts"]
    assert restart["resumedAfterEpoch"] == resumed_after and restart["firstEpoch"] == resumed_after + 1
    print("\n".join(after))  # visible with pytest -s
    report("restart: kill -> first step of the restarted ranks (s)", restart["firstStepAt"] - killed_at)
    report("restart: fit with a killed executor / uninterrupted fit (time)", figures["restartedSeconds"] / figures["uninterruptedSeconds"])


@pytest.mark.timeout(600)
def test_with_maxRestarts_0_a_killed_executor_fails_the_fit_naming_the_lost_rank_and_its_executor(two_workers, tmp_path):
    _, after, figures, killed_at = _submit_and_kill(*two_workers, tmp_path, epochs=30, max_restarts=0)
    assert re.fullmatch(r"training failed: rank [01] on executor \d+ \(127\.0\.0\.1\) was lost: Spark removed executor \d+: "
                        r"Command exited with code 137 \(signal 9, SIGKILL\); restarts are off \(maxRestarts=0\)", figures["error"])
    assert not any(line.startswith("sparkneural: rank") for line in after) and not any(line.startswith("epoch 30/") for line in after)
    assert figures["failedAt"] - killed_at < 30, figures  # the error comes in bounded time, not after a network timeout
