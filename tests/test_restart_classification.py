"""Which failures restart a fit: a collective that failed is told by its type, never by its message.

An error raised outside a collective operation (loading data, the model's
own code) is the training code's, even when it says "Connection reset by
peer": the fit fails at once, naming it. Ranks lost at the same point in
every attempt stop the restarts once one made no progress.
"""

import errno
import multiprocessing
import os
import re
import socket

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from horovod.common.exceptions import HorovodInternalError, HostsUpdatedInterrupt

from injected_faults import kill_at, reset_connection_at
from sparkneural.estimators import MLPClassifier
from sparkneural.training.collective import CollectiveError, TorchDistributedCollective, collective_call
from sparkneural.training.reports import is_collective_error
from sparkneural.training.restarts import RanksLost

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

FIT = dict(hiddenLayers=[16], epochs=5, numProc=2, seed=3)
RESTART_LINE = re.compile(r"^sparkneural: rank \d .* restart \d of \d", re.MULTILINE)
# What pyarrow's S3 file system raises when the connection breaks while it reads a Parquet part.
S3_RESET = OSError("When reading information for key 'data/sparkneural-0/train/part-0.parquet' in bucket 'b': AWS Error "
                   "NETWORK_CONNECTION during HeadObject operation: curlCode: 56, Failure when receiving data from the peer; "
                   "Connection reset by peer")
GLOO_CLOSED = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1")


def _data_errors():
    return [ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), S3_RESET, GLOO_CLOSED]


# -- by type ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("error", _data_errors(), ids=["ConnectionResetError", "pyarrow-s3", "gloo-text"])
def test_an_error_raised_outside_a_collective_operation_is_not_collective_whatever_it_says(error):
    assert not is_collective_error(error)


@pytest.mark.parametrize("error", _data_errors(), ids=["ConnectionResetError", "pyarrow-s3", "gloo-text"])
def test_the_same_error_raised_inside_a_collective_operation_is_collective_and_keeps_the_original(error):
    with pytest.raises(CollectiveError) as raised:
        with collective_call("horovod allreduce"):
            raise error
    assert is_collective_error(raised.value) and raised.value.__cause__ is error
    assert str(raised.value) == f"horovod allreduce failed: {type(error).__name__}: {error}"


def test_a_collective_error_passes_a_nested_collective_call_unchanged():
    with pytest.raises(CollectiveError) as raised:
        with collective_call("outer"), collective_call("inner"):
            raise ConnectionResetError("x")
    assert str(raised.value) == "inner failed: ConnectionResetError: x"


@pytest.mark.parametrize("error", [HorovodInternalError("Horovod has been shut down"), HostsUpdatedInterrupt(False),
                                   dist.DistBackendError("NCCL communicator was aborted"), dist.DistNetworkError("timed out"),
                                   dist.DistStoreError("wait timeout")], ids=lambda e: type(e).__name__)
def test_the_distributed_libraries_own_errors_are_collective(error):
    assert is_collective_error(error)


def test_errors_of_the_training_code_are_not_collective():
    assert not is_collective_error(ValueError("labelCol: expected class labels"))
    assert not is_collective_error(torch.OutOfMemoryError("CUDA out of memory"))


# -- DistributedDataParallel over real gloo --------------------------------------------------------
class _Failing(nn.Module):
    """A model whose own forward raises at one step on rank 0."""

    def __init__(self, inner, rank, step):
        super().__init__()
        self.inner, self.rank, self.step, self.calls = inner, rank, step, 0

    def forward(self, x):
        self.calls += 1
        if self.rank == 0 and self.calls == self.step + 1:
            raise ValueError("the model's own error")
        return self.inner(x)


def _ddp_rank(rank, port, case, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.manual_seed(0)
    comm = TorchDistributedCollective("cpu")
    comm.use_device(torch.device("cpu"))
    layers = [nn.Linear(8, 8)] + ([nn.BatchNorm1d(8)] if case == "buffers" else []) + [nn.Linear(8, 1)]
    model = nn.Sequential(*layers)
    if case == "model":
        model = _Failing(model, rank, step=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    network, optimizer = comm.wrap(model, optimizer)
    stage = "start"
    try:
        for step in range(20):
            if rank == 1 and step == 3 and case != "model":
                os._exit(0)  # a lost peer: its sockets close
            stage = "forward"
            output = network(torch.randn(4, 8))
            stage = "backward"
            comm.backward(output.sum())
            optimizer.step()
            optimizer.zero_grad()
    except Exception as err:  # noqa: BLE001 - what the rank would report
        results.put((rank, stage, type(err).__name__, is_collective_error(err)))
    results.close()
    results.join_thread()  # the put is sent by a thread, which os._exit would not wait for
    os._exit(0)


@pytest.mark.stacks
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case, expected", [
    ("gradients", [(0, "backward", "CollectiveError", True)]),  # DDP's allreduce, inside backward
    ("buffers", [(0, "forward", "CollectiveError", True)]),  # DDP broadcasts the buffers before the forward
    ("model", [(0, "forward", "ValueError", False), (1, "backward", "CollectiveError", True)]),
])
def test_ddp_tells_a_lost_peer_from_an_error_in_the_models_own_forward(case, expected):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ranks = [context.Process(target=_ddp_rank, args=(rank, port, case, results)) for rank in range(2)]
    try:
        for process in ranks:
            process.start()
        reported = sorted(results.get(timeout=90) for _ in expected)
    finally:
        for process in ranks:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert reported == expected


# -- fits --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(digits_df):
    return digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label").cache()


def _fit(data, hooks, **params):
    estimator = MLPClassifier(**{**FIT, **params})
    estimator._test_hooks = hooks
    return estimator.fit(data)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["horovod", "torch_distributor"])
def test_a_connection_reset_while_loading_data_fails_the_fit_once_naming_it_without_a_restart(small, backend, capsys):
    with pytest.raises(RuntimeError, match=r"^training failed on rank 1 on the driver \([^)]+\): "
                                           rf"ConnectionResetError: \[Errno {errno.ECONNRESET}\] Connection reset by peer$"):
        _fit(small, [reset_connection_at(2, rank=1)], backend=backend, maxRestarts=3)
    printed = capsys.readouterr().out
    assert "restart" not in printed and printed.count("epoch 1/5") == 1


@pytest.mark.timeout(400)
def test_a_rank_lost_at_the_same_epoch_in_every_attempt_stops_after_the_restart_that_made_no_progress(small, capsys):
    with pytest.raises(RanksLost) as raised:
        _fit(small, [kill_at(3, rank=1, attempts=99)], backend="horovod", maxRestarts=3)
    assert re.fullmatch(r"training failed: rank 1 on the driver \([^)]+\) was lost: its process \(pid \d+\) ended without a result "
                        r"or an error; lost again in epoch 3 with no progress since restart 1, so not restarting: .*",
                        str(raised.value)), str(raised.value)
    assert len(RESTART_LINE.findall(capsys.readouterr().out)) == 1
