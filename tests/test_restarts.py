"""Lost ranks: the fit starts them again from the last checkpoint; training errors fail at once.

A rank is lost here by the ``kill_at`` hook (tests/injected_faults.py): its training process
sends itself SIGKILL at the start of an epoch, in the first attempt only,
as when its executor is killed (tests/test_standalone_cluster.py kills a real
executor). The report channel is tested on its own first.
"""

import io
import json
import os
import re
import socket
import time

import numpy as np
import pytest
import torch

from injected_faults import fail_at, kill_at
from sparkneural.estimators import MLPClassifier, TorchModel
from sparkneural.training.collective import CollectiveError
from sparkneural.training.loop import load_checkpoint
from sparkneural.training.reports import RankReport, ReportAddress, Reporter, ReportServer, format_epoch, is_collective_error
from sparkneural.training.restarts import RanksLost, _signal_of, _wait_for_slots, lost_ranks, training_error

# Every failure these tests cause is told by one error or restart line: no thread may die with a stack trace.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

FIT = dict(hiddenLayers=[16], epochs=5, numProc=2, seed=3)
RESTART_LINE = re.compile(r"sparkneural: rank (\d) on the driver \([^)]+\) was lost: its process \(pid \d+\) ended without a result "
                          r"or an error; restart (\d) of (\d): waiting for 2 task slots, then the ranks (resume after epoch \d|start again from epoch 1)")


@pytest.fixture(scope="module")
def small(digits_df):
    return digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label").cache()


def _fit(data, hooks=(), **params):
    estimator = MLPClassifier(**{**FIT, **params})
    estimator._test_hooks = hooks
    return estimator.fit(data)


def _same_weights(a, b):
    return a.weights.keys() == b.weights.keys() and all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)


# -- the channel ------------------------------------------------------------------------------
def _closed_by_the_server(connection):
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:  # closed with what we sent still unread
        return True


def test_rank_0s_epochs_and_progress_are_printed_by_the_driver_and_its_end_is_kept():
    out = io.StringIO()
    with ReportServer("127.0.0.1", verbose=1, out=out) as server:
        reporter = Reporter(server.address(0), rank=0)
        record = {"epoch": 1, "loss": 0.5, "accuracy": 0.75, "seconds": 1.25}
        reporter.first_step(1)
        reporter.progress("epoch 1/2 [===] 3/3")
        reporter.epoch(record, 2)
        reporter.checkpoint(1)
        reporter.end()
        (rank,) = server.ranks_of(0, expected=1)
        assert (rank.rank, rank.ended, rank.error, rank.lost, rank.open) == (0, True, None, False, False)
        assert server.checkpointed() == 1 and server.first_steps[0][1] == 1
    assert out.getvalue() == "\repoch 1/2 [===] 3/3" + "\r\x1b[K" + format_epoch(record, 2) + "\n"
    assert format_epoch(record, 2) == "epoch 1/2  loss 0.5000  accuracy 0.7500  1.2s"


def test_a_rank_whose_connection_closes_without_an_end_is_lost_and_an_error_is_kept_with_its_kind():
    with ReportServer("127.0.0.1", verbose=0) as server:
        Reporter(server.address(3), rank=0).close()  # like a process killed mid-fit
        survivor = Reporter(server.address(3), rank=1)
        survivor.end(CollectiveError("horovod allreduce failed: HorovodInternalError: Horovod has been shut down"))
        ranks = server.ranks_of(3, expected=2)
    assert [r.lost for r in ranks] == [True, False]
    assert ranks[1].error == {"type": "CollectiveError", "message": ranks[1].error["message"], "collective": True}


def test_a_connection_that_does_not_know_the_secret_is_refused():
    with ReportServer("127.0.0.1", verbose=1, out=io.StringIO()) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as intruder:
            intruder.makefile("rb").readline()
            intruder.sendall(b"0" * 64 + b"\n")
            intruder.sendall(json.dumps({"kind": "hello", "attempt": 0, "rank": 0}).encode() + b"\n")
            assert _closed_by_the_server(intruder)
        assert server.ranks_of(0, expected=1, settle_s=0.5) == [] and server.out.getvalue() == ""


def test_a_rank_that_cannot_reach_the_driver_prints_its_progress_itself(capsys):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    reporter = Reporter(ReportAddress("127.0.0.1", port, "secret"), rank=0)
    reporter.epoch({"epoch": 2, "loss": 1.0, "seconds": 0.5}, 3)
    captured = capsys.readouterr()
    assert "cannot report to the driver" in captured.err and captured.out == "epoch 2/3  loss 1.0000  0.5s\n"


@pytest.mark.parametrize("answer", ["é" * 64, "\x00" * 200, "not hex at all"])
def test_a_garbage_or_non_ascii_answer_is_refused_without_an_error_on_the_driver(answer, capsys):
    with ReportServer("127.0.0.1", verbose=0) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as intruder:
            intruder.makefile("rb").readline()
            intruder.sendall(answer.encode() + b"\n")
            assert _closed_by_the_server(intruder)
        assert server.ranks_of(0, expected=1, settle_s=0.2) == []
    assert capsys.readouterr().err == ""


def _rank(rank, executor="3", open_=False, ended=False, error=None):
    return RankReport(rank=rank, host="10.0.0.7", executor=executor, pid=100 + rank, open=open_, ended=ended, error=error)


SURVIVOR = {"type": "HorovodInternalError", "message": "Horovod has been shut down", "collective": True}
BUG = {"type": "ValueError", "message": "bad factory", "collective": False}


def test_a_training_error_is_the_cause_even_when_another_rank_went_away():
    ranks = [_rank(0), _rank(1, ended=True, error=BUG)]
    assert training_error(ranks).rank == 1
    assert training_error([_rank(0), _rank(1, ended=True, error=SURVIVOR)]) is None


def test_lost_ranks_are_those_gone_without_an_end_or_whose_executor_spark_removed():
    gone = {"3": "Command exited with code 137"}.get
    # a closed connection without an end; Spark's reason names the signal
    (lost,) = lost_ranks([_rank(0), _rank(1, executor="4", ended=True, error=SURVIVOR)], 2, gone)
    assert lost[0].rank == 0 and lost[1] == ("rank 0 on executor 3 (10.0.0.7) was lost: Spark removed executor 3: "
                                             "Command exited with code 137 (signal 9, SIGKILL)")
    (lost,) = lost_ranks([_rank(0, executor="9"), _rank(1, ended=True, error=SURVIVOR)], 2, gone)
    assert lost[1] == "rank 0 on executor 9 (10.0.0.7) was lost: its process (pid 100) ended without a result or an error"
    # still connected, but its executor is gone: lost too
    assert len(lost_ranks([_rank(0, open_=True), _rank(1, ended=True, error=SURVIVOR)], 2, gone)) == 1


def test_a_failure_the_driver_cannot_account_for_is_not_a_lost_rank():
    gone = {"3": "Command exited with code 137"}.get
    # a rank that never reported
    assert lost_ranks([_rank(0)], 2, gone) == []
    # a rank still running on a live executor (hung): restarting would not help
    assert lost_ranks([_rank(0), _rank(1, executor="4", open_=True)], 2, gone) == []
    # every rank ended: nothing was lost
    assert lost_ranks([_rank(0, ended=True, error=SURVIVOR), _rank(1, ended=True, error=SURVIVOR)], 2, gone) == []


def test_a_restart_that_gets_no_slots_within_restartTimeout_fails_saying_so(monkeypatch):
    from sparkneural import spark_internals

    monkeypatch.setattr(spark_internals, "task_slots", lambda context: 1)
    began = time.monotonic()
    with pytest.raises(RanksLost, match=r"^training failed: rank 1 was lost; Spark offered 1 task slot\(s\) for 2 ranks "
                                        r"within restartTimeout=1 s, so the ranks could not start again$"):
        _wait_for_slots(None, 2, 1.0, "rank 1 was lost")
    assert time.monotonic() - began >= 1.0
    monkeypatch.setattr(spark_internals, "task_slots", lambda context: 2)
    _wait_for_slots(None, 2, 1.0, "rank 1 was lost")  # enough slots: returns at once


def test_checkpoints_are_written_and_read_on_paths_with_any_characters(tmp_path):
    from sparkneural.training.loop import _save_checkpoint

    directory = str(tmp_path / "a dir with %20 and #")
    _save_checkpoint(directory, {"epoch": 4, "run": "r"})
    assert load_checkpoint(directory) == {"epoch": 4, "run": "r"}
    assert load_checkpoint(str(tmp_path / "none yet")) is None


def test_collective_failures_are_told_from_errors_of_the_training_code():
    from horovod.common.exceptions import HorovodInternalError

    class NamedLikeIt(RuntimeError):  # a type is known by its identity, not its name
        pass

    NamedLikeIt.__name__ = "HorovodInternalError"
    assert is_collective_error(HorovodInternalError("anything"))
    assert is_collective_error(CollectiveError("torch.distributed all_reduce failed: RuntimeError: Connection closed by peer"))
    assert not is_collective_error(NamedLikeIt("anything"))
    assert not is_collective_error(ValueError("labelCol: expected class labels"))
    assert not is_collective_error(RuntimeError("injected failure at epoch 3 on rank 1"))


def test_an_exit_code_above_128_is_named_as_its_signal():
    assert _signal_of("Command exited with code 137") == " (signal 9, SIGKILL)"
    assert _signal_of("Command exited with code 143") == " (signal 15, SIGTERM)"
    assert _signal_of("Command exited with code 1") == "" and _signal_of("Executor heartbeat timed out") == ""


# -- fits ---------------------------------------------------------------------------------------
@pytest.mark.stacks
@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["horovod", "torch_distributor"])
def test_a_lost_rank_is_started_again_and_the_fit_ends_as_if_uninterrupted(small, backend, capsys, tmp_path):
    uninterrupted = _fit(small, backend=backend, verbose=0)
    capsys.readouterr()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    restarted = _fit(small, [kill_at(3, rank=1)], backend=backend, dataDir=str(data_dir))
    printed = capsys.readouterr().out.splitlines()
    assert _same_weights(restarted, uninterrupted)
    assert [h["epoch"] for h in restarted.history] == [1, 2, 3, 4, 5] and restarted.epochsRun == [1, 2, 3, 4, 5]
    for epoch in range(1, 6):  # each epoch line once, printed by the driver
        assert sum(line.startswith(f"epoch {epoch}/5  loss") for line in printed) == 1, printed
    (line,) = [line for line in printed if line.startswith("sparkneural: rank")]
    assert RESTART_LINE.fullmatch(line).groups() == ("1", "1", "2", "resume after epoch 2")
    (restart,) = restarted.restarts
    assert restart["restart"] == 1 and restart["resumedAfterEpoch"] == 2
    assert [(r["rank"], r["executor"]) for r in restart["lost"]] == [(1, "driver")] and restart["firstEpoch"] == 3
    assert os.listdir(data_dir) == []  # the temporary checkpoints went with the training data
    path = str(tmp_path / "model")
    restarted.save(path)
    assert TorchModel.load(path).restarts == restarted.restarts


@pytest.mark.timeout(300)
def test_with_maxRestarts_0_a_lost_rank_fails_the_fit_at_once_naming_the_rank(small):
    began = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^training failed: rank 0 on the driver \([^)]+\) was lost: its process \(pid \d+\) "
                                           r"ended without a result or an error; restarts are off \(maxRestarts=0\)$") as failure:
        _fit(small, [kill_at(2, rank=0)], backend="horovod", maxRestarts=0, verbose=0)
    assert "Horovod has been shut down" not in str(failure.value)  # the survivor's error is a consequence
    assert time.monotonic() - began < 120


@pytest.mark.timeout(300)
def test_ranks_lost_again_after_the_last_restart_fail_the_fit(small, capsys):
    with pytest.raises(RuntimeError, match=r"was lost: .*; after 1 restart\(s\) \(maxRestarts=1\)$"):
        _fit(small, [kill_at(2, rank=1, attempts=2)], backend="horovod", maxRestarts=1)
    assert len(RESTART_LINE.findall(capsys.readouterr().out)) == 1


@pytest.mark.timeout(300)
def test_an_exception_in_the_training_code_is_never_retried(small, capsys):
    with pytest.raises(RuntimeError, match=r"^training failed on rank 1 on the driver \([^)]+\): RuntimeError: injected failure at epoch 2"):
        _fit(small, [fail_at(2, rank=1)], backend="torch_distributor")
    printed = capsys.readouterr().out
    assert "restart" not in printed and printed.count("epoch 1/5") == 1


@pytest.mark.timeout(400)
def test_a_restart_never_resumes_from_a_checkpoint_an_earlier_fit_left(small, tmp_path):
    directory = str(tmp_path / "checkpoints")
    earlier = _fit(small, backend="horovod", checkpointDir=directory, seed=7, verbose=0)
    assert torch.load(os.path.join(directory, "checkpoint.pt"), weights_only=True)["epoch"] == 5
    uninterrupted = _fit(small, backend="horovod", verbose=0)
    # lost in epoch 1, before this fit wrote a checkpoint: it starts again from scratch, not from epoch 5
    restarted = _fit(small, [kill_at(1, rank=0)], backend="horovod", checkpointDir=directory, verbose=0)
    assert restarted.restarts[0]["resumedAfterEpoch"] == 0 and restarted.epochsRun == [1, 2, 3, 4, 5]
    assert _same_weights(restarted, uninterrupted) and not _same_weights(restarted, earlier)


@pytest.mark.timeout(400)
def test_fits_running_at_once_each_restart_from_their_own_checkpoints(small):
    """CrossValidator's parallelism: fits sharing one materialisation, each losing a rank."""
    from multiprocessing.pool import ThreadPool

    one_rank = dict(FIT, numProc=1, backend="torch_distributor", verbose=0)  # horovod.spark.run needs the main thread
    maps = [{}, {MLPClassifier.learningRate: 0.01}]
    expected = [MLPClassifier(**one_rank).copy(m).fit(small) for m in maps]
    estimator = MLPClassifier(**one_rank)
    estimator._test_hooks = [kill_at(3)]
    fits = estimator.fitMultiple(small, maps)
    with ThreadPool(2) as pool:
        models = dict(pool.imap_unordered(lambda _: next(fits), range(len(maps))))
    for index, model in models.items():
        assert model.restarts[0]["resumedAfterEpoch"] == 2 and model.restarts[0]["firstEpoch"] == 3
        assert _same_weights(model, expected[index])
