"""Training from a Spark Connect client: every distributed backend's ranks as one barrier stage.

The client runs in its own process against a real Connect server (a
standalone master and two 1-core workers on 127.0.0.1, see
``connect_server``); it has no SparkContext and opens no port.
"""

import re

import pytest

from connect_server import run_client

pytestmark = [pytest.mark.connect, pytest.mark.timeout(900)]


def test_each_backend_trains_digits_on_two_ranks_with_epoch_lines_on_the_client_no_listening_socket_and_a_pipeline_round_trip(connect_url, report, tmp_path):
    figures = run_client("connect_training.py", connect_url, ["fits", str(tmp_path / "pipeline")])
    for backend in ("horovod", "torch_distributor", "auto"):
        report(f"connect: {backend} digits accuracy, 2 ranks, 5 epochs", figures[backend]["accuracy"])
    assert figures["session"].startswith("pyspark.sql.connect")
    for backend in ("horovod", "torch_distributor", "auto"):
        assert figures[backend]["ranks"] == 2, backend
        assert figures[backend]["accuracy"] >= 0.9, (backend, figures[backend])
    # The ranks' epoch lines reached the client's own output: five per fit, three fits.
    assert len(re.findall(r"^epoch [1-5]/5  loss \d", figures["stdout"], flags=re.M)) == 15
    assert figures["socketSamples"] > 0 and figures["listening"] == []
    # A saved and loaded Pipeline scores every test row exactly as the fitted one did.
    assert figures["pipeline"]["rows"] > 300 and figures["pipeline"]["identical"] and figures["pipeline"]["accuracy"] >= 0.9
    # CrossValidator over 1 and 3 epochs: two folds each, and 3 epochs fit the digits better than 1.
    low, high = figures["crossValidation"]["avgMetrics"]
    assert 0 < low < high and figures["crossValidation"]["bestEpochs"] == 3


def test_an_executor_killed_mid_fit_costs_a_restart_not_the_fit(connect_url, tmp_path, report):
    figures = run_client("connect_training.py", connect_url, ["restart", str(tmp_path / "checkpoints")])
    report("connect: restart after a SIGKILLed executor", str(figures["restarts"])[:300])
    report("connect: accuracy after the restart", figures["accuracy"])
    assert figures["killed"], "no executor was killed"
    assert len(figures["restarts"]) == 1, figures["restarts"]
    assert figures["history"] == list(range(1, 9))
    assert figures["accuracy"] >= 0.9
