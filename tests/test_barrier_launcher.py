"""The launcher every distributed backend shares: the ranks as the tasks of one barrier stage.

Checked against independent expectations: Horovod's own host assignment for
the ranks' places, the sockets the kernel reports for the rendezvous, the
process environment before and after, the rule for a Connect client's
default ``numProc``, and the messages a folder channel carries.
"""

import io
import os
import socket
import threading

import pytest

from sparkneural import cluster
from sparkneural.training.backends import barrier
from sparkneural.training.reports import FolderAddress, Reporter, ReportFolder, format_epoch


@pytest.mark.parametrize("hosts", [("a", "a"), ("a", "b", "a", "b"), ("a", "a", "b"), ("a", "b", "b", "c")])
def test_each_ranks_place_is_the_one_horovods_own_host_assignment_gives(hosts):
    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts

    # Horovod numbers ranks host by host; a barrier stage may interleave hosts, so compare by (host, local rank).
    order = list(dict.fromkeys(hosts))
    slots = get_host_assignments(parse_hosts(",".join(f"{h}:{hosts.count(h)}" for h in order)), len(hosts))
    expected = {(s.hostname, s.local_rank): (s.local_size, s.cross_rank, s.cross_size) for s in slots}
    for rank in range(len(hosts)):
        topology = barrier.Topology(rank, hosts)
        assert (topology.local_size, *topology.cross(rank)) == expected[(hosts[rank], topology.local_rank)]
    assert sorted((h, barrier.Topology(r, hosts).local_rank) for r, h in enumerate(hosts)) == sorted(expected)


def test_a_task_address_gives_its_host_also_in_ipv6_brackets():
    assert barrier._host("10.0.0.7:41000") == "10.0.0.7"
    assert barrier._host("[fe80::1]:41000") == "fe80::1"
    assert barrier._host("worker-3") == "worker-3"


def test_horovods_rendezvous_listens_on_rank_0s_address_only_and_closes(monkeypatch):
    from sparkneural.training.backends.horovod import Rendezvous, horovod_env

    rendezvous = Rendezvous(barrier.Topology(0, ("127.0.0.1", "127.0.0.1")))
    try:
        address, port = rendezvous.server.socket.getsockname()
        assert address == "127.0.0.1" and port == rendezvous.port > 0
        env = horovod_env(barrier.Topology(1, ("127.0.0.1", "127.0.0.1")), rendezvous.port)
        assert env["HOROVOD_RANK"] == "1" and env["HOROVOD_LOCAL_RANK"] == "1" and env["HOROVOD_SIZE"] == "2"
        assert env["HOROVOD_GLOO_RENDEZVOUS_ADDR"] == "127.0.0.1" and env["HOROVOD_GLOO_RENDEZVOUS_PORT"] == str(port)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # it serves
    finally:
        rendezvous.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_rank_0s_value_reaches_the_other_ranks_through_the_fit_directory_and_a_missing_one_times_out(tmp_path):
    class Spec:  # what rank0_value reads of a TrainSpec
        runId, reports = "0123abcd", FolderAddress(str(tmp_path), attempt=2)

        class data:
            root = str(tmp_path)

    found = {}
    reader = threading.Thread(target=lambda: found.setdefault(1, barrier.rank0_value(Spec, "store", barrier.Topology(1, ("h", "h")), None, 10)))
    reader.start()
    assert barrier.rank0_value(Spec, "store", barrier.Topology(0, ("h", "h")), "29500", 10) == "29500"
    reader.join()
    assert found == {1: "29500"}
    assert sorted(os.listdir(tmp_path)) == ["store-0123abcd-2"]  # no partial file left behind
    with pytest.raises(TimeoutError, match="rank 0 did not publish 'rendezvous-0123abcd-2'"):
        barrier.rank0_value(Spec, "rendezvous", barrier.Topology(1, ("h", "h")), None, 0.2)


def test_a_ranks_environment_is_put_back_as_it_was_when_it_ends(monkeypatch):
    monkeypatch.setenv("SPARKNEURAL_KEPT", "before")
    monkeypatch.delenv("HOROVOD_RANK", raising=False)
    with pytest.raises(RuntimeError):
        with barrier.environment({"SPARKNEURAL_KEPT": "during", "HOROVOD_RANK": "1"}):
            assert os.environ["SPARKNEURAL_KEPT"] == "during" and os.environ["HOROVOD_RANK"] == "1"
            raise RuntimeError("the rank failed")
    assert os.environ["SPARKNEURAL_KEPT"] == "before" and "HOROVOD_RANK" not in os.environ


class _Conf:
    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


class _ConnectSession:  # what cluster reads of a Connect client: its module and spark.conf
    __module__ = "pyspark.sql.connect.session"

    def __init__(self, **values):
        self.conf = _Conf(values)


@pytest.mark.parametrize("conf, slots", [
    ({"spark.master": "local[3]"}, 3),
    ({"spark.master": "local-cluster[2,2,1024]", "spark.task.cpus": "2"}, 2),
    ({"spark.master": "yarn", "spark.executor.instances": "4", "spark.executor.cores": "4", "spark.task.cpus": "2"}, 8),
    ({"spark.master": "spark://m:7077", "spark.cores.max": "6"}, 6),
    ({"spark.master": "k8s://x", "spark.default.parallelism": "12"}, 12),
])
def test_a_connect_clients_task_slots_follow_the_documented_rule(conf, slots):
    assert cluster.is_connect(_ConnectSession(**conf)) and cluster.context(_ConnectSession(**conf)) is None
    assert cluster.task_slots(_ConnectSession(**conf)) == slots


@pytest.mark.parametrize("conf, why", [
    ({"spark.master": "yarn", "spark.dynamicAllocation.enabled": "true", "spark.executor.cores": "4"}, "dynamic allocation"),
    ({"spark.master": "yarn"}, "cannot tell how many tasks"),
])
def test_where_a_connect_client_cannot_know_the_slots_the_error_asks_for_numProc(conf, why):
    with pytest.raises(ValueError, match=f"^numProc: .*{why}.*set numProc"):
        cluster.task_slots(_ConnectSession(**conf))


def test_the_folder_channel_prints_rank_0s_epochs_and_tells_lost_ranks_from_ended_ones(tmp_path):
    out = io.StringIO()
    record = {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "seconds": 0.1}
    with ReportFolder(str(tmp_path / "reports"), verbose=1, out=out) as board:
        rank0, rank1 = Reporter(board.address(0), 0), Reporter(board.address(0), 1)
        rank0.epoch(record, 3)
        rank0.checkpoint(1)
        rank0.end(ValueError("bad row"))
        rank1.progress("[=====     ]")  # no file per redrawn bar
        (tmp_path / "reports" / "000-00001-000099.json").write_text("{not json")  # dropped, not fatal
        (tmp_path / "reports" / "notes.txt").write_text("ignored")
        ranks = board.ranks_of(0, expected=2)
        assert board.checkpointed() == 1
    assert out.getvalue() == format_epoch(record, 3) + "\n"
    assert [(r.rank, r.ended, r.lost) for r in ranks] == [(0, True, False), (1, False, True)]
    assert ranks[0].error == {"type": "ValueError", "message": "bad row", "collective": False}
    # rank 0: hello, epoch, checkpoint, end; rank 1: hello (no file per redrawn bar); and the two strays
    assert len(os.listdir(tmp_path / "reports")) == 4 + 1 + 2


def test_a_pyspark_whose_mapInArrow_has_no_barrier_stage_gets_one_clear_error():
    class Frame:  # pyspark 3.5's Connect client: mapInArrow(func, schema) and nothing more
        def mapInArrow(self, func, schema):
            return self

    class Session:
        def range(self, *args, **kwargs):
            return Frame()

    with pytest.raises(RuntimeError, match=r"^this pyspark \(.*\) cannot launch the ranks as a barrier stage .*use Spark 4, or backend='local'$"):
        barrier.launch(Session(), 2, lambda topology: None)
