import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local[2] SparkSession for the whole test session."""
    from sparkneural.session import get_spark

    cache = tmp_path_factory.mktemp("parquet-cache")
    session = get_spark(
        "sparkneural-tests",
        master="local[2]",
        conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.sparkneural.dataDir": f"file://{cache}",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def connect_url(tmp_path_factory):
    """The ``sc://`` URL of one real Spark Connect server (a standalone master, two 1-core workers) for the
    whole test session, started when a test first asks for it; skipped where pyspark ships no Connect server."""
    from connect_server import connect_server, connect_server_available

    if not connect_server_available():
        pytest.skip("this pyspark ships no Spark Connect server (spark-connect_*.jar)")
    with connect_server(tmp_path_factory.mktemp("connect-server")) as url:
        yield url


@pytest.fixture(scope="session")
def digits_df(spark):
    from sparkneural.datasets import digits

    return digits(spark).cache()


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (small models: threads only add overhead), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def report():
    """Record a measured figure; the terminal summary lists them all at the end of the run."""

    def add(name: str, value) -> None:
        _FIGURES.append((name, f"{value:.4f}" if isinstance(value, float) else str(value)))

    return add


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        width = max(len(name) for name, _ in _FIGURES)
        for name, value in _FIGURES:
            terminalreporter.write_line(f"{name:<{width}}  {value}")
