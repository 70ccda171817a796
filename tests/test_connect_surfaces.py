"""What a user touches outside training, from a Spark Connect client of a real Connect server.

One client process (tests/scripts/connect_surfaces.py) runs every step
against the session's server (``connect_url``: a standalone master and two
1-core workers on 127.0.0.1) and reports what it saw as JSON; each test
checks one part of that report.
"""

import socket

import numpy as np
import pytest
from sklearn.datasets import load_digits

from connect_server import listening_sockets, run_client
from sparkneural.session import get_spark

pytestmark = pytest.mark.connect


@pytest.fixture(scope="module")
def client(connect_url, tmp_path_factory):
    """The client's report and its scratch directory."""
    scratch = tmp_path_factory.mktemp("connect-client")
    return run_client("connect_surfaces.py", connect_url, [str(scratch)], timeout=600), scratch


def test_get_spark_with_SPARK_REMOTE_gives_a_connect_session_to_that_servers_cluster(client):
    found, _ = client
    assert found["sessionClass"] == "pyspark.sql.connect.session.SparkSession"
    assert found["sameSessionAgain"]
    assert found["master"].startswith("spark://127.0.0.1:")  # the server's standalone master, not a local one
    assert found["arrow"] == "true"
    # the driver settings of DEFAULT_CONF are not sent to a running server, so nothing is refused
    assert found["startWarnings"] == []


def test_on_a_running_server_only_runtime_settings_are_applied_and_the_others_are_named(client):
    found, _ = client
    assert found["shufflePartitions"] == "5"
    (warning,) = found["refusedWarnings"]
    assert "spark.executor.memory cannot be changed on a running server" in warning
    assert "spark.sql.shuffle.partitions" not in warning


def test_digits_on_connect_gives_the_1797_rows_of_scikit_learn_in_parallelize_s_two_slices(client):
    found, _ = client
    reference = load_digits()
    partitions = [row[0] for row in found["digits"]]
    assert len(found["digits"]) == 1797
    # parallelize cut 1,797 rows into batches of 898 and gave partition 0 the first batch
    assert partitions == [0] * 898 + [1] * 899
    assert [row[1] for row in found["digits"]] == reference.target.astype(float).tolist()
    assert np.array_equal(np.array([row[2] for row in found["digits"]]), reference.data)


def test_digits_split_on_connect_holds_the_same_test_rows_as_on_a_classic_session(client, spark):
    from sparkneural.datasets import digits_split

    found, _ = client
    _, test = digits_split(spark, (0.8, 0.1, 0.1), seed=7)
    assert found["splitTestLabels"] == sorted(r.label for r in test.select("label").collect())


def test_sparkneural_run_with_remote_runs_the_pipeline_on_the_connect_server(client):
    found, scratch = client
    assert found["cliExit"] == 0, found["cliOutput"]
    metrics = found["cliMetrics"]
    assert metrics["epochs_run"] == 2 and metrics["test_rows"] == 190
    assert metrics["test_accuracy"] > 0.3  # chance is 0.1; two epochs of this model reach about 0.7
    assert "epoch 2/2" in found["cliOutput"]
    assert (scratch / "digits_mlp" / "model" / "metadata").is_dir()


def test_a_pipeline_saved_twice_with_overwrite_loads_and_scores_row_for_row_identically(client):
    found, scratch = client
    before, after = found["predictionsBefore"], found["predictionsAfter"]
    assert len(before) == 190 and after == before
    accuracy = np.mean([p[1] == label for p, label in zip(before, found["labelsOfTest"])])
    assert accuracy > 0.5
    assert [name.split("_")[1] for name in found["savedStages"]] == ["StandardScaler", "MLPClassifierModel"]
    # the second save replaced the first and left no staging or retired directory beside it
    stages = scratch / "pipeline" / "stages"
    assert sorted(p.name for p in stages.iterdir()) == found["savedStages"]


def test_cross_validator_over_two_learning_rates_returns_a_model_of_the_better_one(client):
    found, _ = client
    assert found["crossValidatorModel"] == "CrossValidatorModel" and found["isCrossValidatorModel"]
    assert found["crossValidatorBestIsMLP"] == "MLPClassifierModel"
    slow, fast = found["crossValidatorMetrics"]
    assert 0 <= slow < fast <= 1  # two epochs: learning rate 0.01 gets much further than 0.001


def test_read_wav_on_connect_names_an_empty_wav_file_and_reads_the_others(client):
    found, scratch = client
    assert found["emptyWavError"] == (
        "read_wav: 1 file(s) cannot be read as integer PCM WAV:\n"
        f"  file:{scratch / 'audio' / 'silent.wav'}: empty file (0 bytes)"
    )
    assert found["wavSamples"] == [3]


def test_the_connect_client_listens_on_no_tcp_port_and_starts_no_process(client):
    found, _ = client
    assert found["listening"] == [] and found["children"] == []


def test_listening_sockets_finds_a_socket_this_process_listens_on():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        before = listening_sockets()
        server.listen()
        port = server.getsockname()[1]
        assert f"0100007F:{port:04X}" in listening_sockets()
    assert f"0100007F:{port:04X}" not in before


def test_get_spark_refuses_both_a_master_and_a_remote():
    with pytest.raises(ValueError, match=r"master, remote: give one of them, found master='local\[2\]' and remote='sc://h:1'"):
        get_spark(master="local[2]", remote="sc://h:1")
