"""A real Spark Connect server for tests, and the checks a Connect client process runs.

``connect_server`` starts ``sbin/start-connect-server.sh --wait`` in front of
a standalone master with two 1-core workers, all on 127.0.0.1, and yields
its ``sc://127.0.0.1:<port>`` URL. ``run_client`` runs a script of
``tests/scripts`` in its own process against that URL and returns the JSON
object the script prints last. ``listening_sockets`` lists the TCP sockets a
process listens on, so a client can show it opened none.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from spark_cluster import SPARK_HOME, free_port, spark_env, standalone, stop, wait_for_port

SCRIPTS = Path(__file__).resolve().parent / "scripts"
_LISTEN = "0A"  # TCP_LISTEN, as /proc/net/tcp writes the state


def connect_server_available() -> bool:
    """Whether this pyspark ships the Connect server (pyspark 4 does; pyspark 3.5's pip package does not)."""
    return any((SPARK_HOME / "jars").glob("spark-connect_*.jar"))


@contextlib.contextmanager
def connect_server(tmp_path: Path, timeout: float = 180) -> Iterator[str]:
    """A Spark Connect server on a standalone master with two 1-core, 1 GiB workers; yields its ``sc://`` URL.

    Executors run this interpreter; training data goes under ``tmp_path/data``;
    logs and pid files stay under ``tmp_path``. Everything is stopped
    afterwards, also when the test fails.
    """
    (tmp_path / "data").mkdir(exist_ok=True)
    with standalone(tmp_path, [1, 1], worker_memory="1g") as (master, _):
        port = free_port()
        command = [
            str(SPARK_HOME / "sbin" / "start-connect-server.sh"), "--wait",
            "--master", master, "--total-executor-cores", "2", "--executor-memory", "1g",
            "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf", f"spark.connect.grpc.binding.port={port}",
            "--conf", "spark.driver.host=127.0.0.1",
            "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.pyspark.python={sys.executable}",
            "--conf", f"spark.sparkneural.dataDir=file://{tmp_path / 'data'}",
        ]
        log = open(tmp_path / "connect-server.log", "w")
        server = subprocess.Popen(command, env=spark_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True, cwd=tmp_path)
        try:
            try:
                wait_for_port(port, timeout, server)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"Spark Connect server: {error}; its log ends:\n{_tail(tmp_path / 'connect-server.log')}") from None
            yield f"sc://127.0.0.1:{port}"
        finally:
            stop([server])
            log.close()


def run_client(script: str, url: str, args: Sequence[str] = (), timeout: float = 600,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``tests/scripts/<script>`` with ``SPARK_REMOTE=url``; return the JSON object it prints last.

    The script's exit status must be 0; its output is in the assertion message otherwise.
    """
    environment = {**os.environ, "SPARK_REMOTE": url, "PYSPARK_PYTHON": sys.executable, **(env or {})}
    environment.pop("SPARK_CONNECT_MODE_ENABLED", None)
    result = subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True,
                            env=environment, timeout=timeout, cwd=SCRIPTS.parent.parent)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script} exited with {result.returncode}:\n{output[-6000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{script} printed no JSON line:\n{output[-6000:]}"
    return json.loads(lines[-1])


def listening_sockets(pid: int | str = "self") -> list[str]:
    """``host:port`` (hex, as /proc writes them) of each TCP socket that process ``pid`` listens on."""
    inodes = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    listening = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == _LISTEN and fields[9] in inodes:
                    listening.append(fields[1])
    return listening


def _tail(path: Path, lines: int = 60) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
