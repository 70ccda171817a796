"""A real standalone Spark cluster on 127.0.0.1 for tests: a master and its workers, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float, process: subprocess.Popen | None = None) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``; fail early if ``process`` exits."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process meant to listen on 127.0.0.1:{port} exited with code {process.returncode}")
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def stop(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM each process's group (started with ``start_new_session``), SIGKILL it after 30 s, last started first."""
    for process in reversed(processes):
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def spark_env(log_dir: Path) -> dict[str, str]:
    """The environment of the cluster's daemons: 127.0.0.1 only, this interpreter for Python workers,
    logs, pid files and work directories under ``log_dir``."""
    return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
            "SPARK_WORKER_DIR": str(log_dir / "work"), "SPARK_LOG_DIR": str(log_dir), "SPARK_PID_DIR": str(log_dir)}


@contextlib.contextmanager
def standalone(tmp_path: Path, worker_cores: Sequence[int], worker_memory: str = "3g") -> Iterator[tuple[str, list[int]]]:
    """A master and one worker per entry of ``worker_cores``; yields (master URL, worker pids).

    Both are stopped afterwards, also when the test fails.
    """
    env = spark_env(tmp_path)
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    processes: list[subprocess.Popen] = []
    try:
        processes.append(subprocess.Popen(
            [str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(free_port())],
            env=env, stdout=open(tmp_path / "master.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        wait_for_port(port, 60)
        for i, cores in enumerate(worker_cores):
            processes.append(subprocess.Popen(
                [str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", url, "--cores", str(cores),
                 "--memory", worker_memory, "--host", "127.0.0.1", "--webui-port", str(free_port())],
                env=env, stdout=open(tmp_path / f"worker-{i}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        yield url, [p.pid for p in processes[1:]]
    finally:
        stop(processes)
