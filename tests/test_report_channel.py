"""The report channel keeps serving the fit's ranks whatever else connects to it.

Anyone who can reach the driver's port can open connections to the report
server: a flood of idle ones at a soft descriptor limit of 1024, a peer that
sends nothing, a rank whose message is nested too deep. None of them may stop
the server, and a genuine rank still gets in. The servers under a descriptor
limit run in child processes, so the limit never touches pytest's own.
"""

import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from sparkneural.training import reports
from sparkneural.training.reports import MAX_LINE, ReportAddress, Reporter, ReportServer, format_epoch

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

RECORD = {"epoch": 1, "loss": 0.5, "seconds": 1.0}
EPOCH_LINE = format_epoch(RECORD, 1)  # "epoch 1/1  loss 0.5000  1.0s"
PORT_CONF = "spark.sparkneural.reportPort"
FLOOD = 1500
# Opens argv[3] idle connections to (argv[1], argv[2]), in batches the listen backlog holds, each taken in by the
# server (its challenge, or its close, arrived) before the next, as a flood that outpaces the server would (at most
# 5s a batch); prints how many, and holds them until its stdin closes; then prints how many the server had closed.
# Its own descriptor limit is raised for them.
FLOODER = r"""
import json, resource, select, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
held, taken_in = [], 0
while len(held) < count:
    batch = {}
    for _ in range(min(100, count - len(held))):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        batch[s.fileno()] = s
    held += batch.values()
    poller = select.poll()
    for fd in batch:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + 5
    while batch and time.monotonic() < deadline:
        for fd, _ in poller.poll(200):
            batch.pop(fd)
            poller.unregister(fd)
            taken_in += 1
print(json.dumps({"opened": len(held), "taken_in": taken_in}), flush=True)
sys.stdin.read()
def closed(s):
    try:
        while True:
            if not s.recv(4096):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
print(json.dumps({"closed_by_server": sum(closed(s) for s in held)}), flush=True)
"""


def _flood(host, port, count=FLOOD):
    """A child process holding ``count`` idle connections to the server, and how many the server took in."""
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, host, str(port), str(count)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    return flooder, json.loads(flooder.stdout.readline())


def _closed_by_the_server(connection):
    connection.settimeout(30)  # the server closes it at once; old servers waited out the challenge
    try:
        while True:
            if not connection.recv(4096):
                return True
    except ConnectionResetError:
        return True


def _still_open(connection):
    connection.setblocking(False)
    try:
        while connection.recv(4096):  # the challenge, if not read yet
            pass
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def _child(script, tmp_path, *args):
    path = tmp_path / "server.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(path), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _report_epoch(port, secret):
    reporter = Reporter(ReportAddress("127.0.0.1", port, secret), rank=0)
    reporter.epoch(RECORD, 1)
    reporter.end()


# -- where it listens ----------------------------------------------------------------------
def test_the_server_listens_on_the_drivers_address_only():
    with ReportServer("127.0.0.1", verbose=0) as server:
        assert server.listener.getsockname()[0] == "127.0.0.1"
    with ReportServer("localhost", verbose=0) as server:  # a name: the address it resolves to
        assert server.listener.getsockname()[0] in ("127.0.0.1", "::1")
        assert server.address(0).host == "localhost"
    with ReportServer("driver.example.invalid", verbose=0, bind="127.0.0.1") as server:  # spark.driver.bindAddress
        assert server.listener.getsockname()[0] == "127.0.0.1" and server.address(0).host == "driver.example.invalid"


def test_a_host_that_is_not_the_drivers_fails_naming_the_confs():
    elsewhere = next(a for a in ("198.51.100.7", "203.0.113.7", "192.0.2.123") if not _local(a))  # documentation addresses
    with pytest.raises(RuntimeError, match=rf"report channel on {elsewhere}:0 .*spark\.driver\.bindAddress, else spark\.driver\.host"):
        ReportServer(elsewhere, verbose=0)


def _local(address):
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
            return True
        except OSError:
            return False


def test_spark_sparkneural_reportPort_fixes_the_port(spark):
    with socket.socket() as probe:  # a port free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spark.conf.set(PORT_CONF, str(port))
    try:
        with ReportServer.on_driver("127.0.0.1", 0, num_proc=2) as server:
            assert server.port == port and server.listener.getsockname() == ("127.0.0.1", port)
            _report_epoch(server.port, server.secret)
            assert [r.ended for r in server.ranks_of(0, expected=1)] == [True]
    finally:
        spark.conf.unset(PORT_CONF)
    with ReportServer.on_driver("127.0.0.1", 0, num_proc=2) as server:  # unset: any free port
        assert server.port > 0


@pytest.mark.parametrize("value", ["http", "70000", "-1", "1.5", "True"])
def test_a_bad_reportPort_fails_naming_the_conf(spark, value):
    assert reports.report_port(None) == reports.report_port("") == reports.report_port("0") == 0
    assert reports.report_port(" 8123 ") == 8123
    spark.conf.set(PORT_CONF, value)
    try:
        with pytest.raises(ValueError, match=rf"spark\.sparkneural\.reportPort must be a TCP port number from 0 to 65535 .*got '{re.escape(value)}'"):
            ReportServer.on_driver("127.0.0.1", 0, num_proc=2)
    finally:
        spark.conf.unset(PORT_CONF)


# -- what a peer sends ---------------------------------------------------------------------
@pytest.mark.parametrize("message", [b"[" * 100_000, b"{" * 100_000, b"x" * (MAX_LINE + 10), b"not json",
                                     json.dumps({"kind": "epoch", "record": "x", "epochs": 1}).encode(),
                                     json.dumps({"kind": "epoch", "record": RECORD, "epochs": 1e400}).encode()],
                         ids=["nested-lists", "nested-objects", "longer-than-MAX_LINE", "not-json", "wrong-fields", "infinity"])
def test_a_message_the_server_cannot_parse_is_dropped_and_the_ranks_next_report_arrives(message):
    out = io.StringIO()
    with ReportServer("127.0.0.1", verbose=1, out=out) as server:
        reporter = Reporter(server.address(0), rank=0)
        reporter.connection.sendall(message + b"\n")
        reporter.epoch(RECORD, 1)
        reporter.end()
        (rank,) = server.ranks_of(0, expected=1)
        assert (rank.ended, rank.lost) == (True, False)
    assert out.getvalue() == EPOCH_LINE + "\n"


def test_a_connection_whose_thread_cannot_start_is_closed_and_the_server_keeps_accepting(monkeypatch):
    out = io.StringIO()
    with ReportServer("127.0.0.1", verbose=1, out=out) as server:
        start, refused = threading.Thread.start, []

        def start_once_failing(thread):
            if not refused:
                refused.append(thread)
                raise RuntimeError("can't start new thread")
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", start_once_failing)
        with socket.create_connection(("127.0.0.1", server.port)) as first:
            assert _closed_by_the_server(first)
        _report_epoch(server.port, server.secret)
        assert [r.ended for r in server.ranks_of(0, expected=1)] == [True]
    assert out.getvalue() == EPOCH_LINE + "\n"


@pytest.mark.parametrize("num_proc, cap", [(None, 8), (2, 8), (5, 20)])  # max(8, 4 * numProc); one rank by default
def test_beyond_the_cap_a_new_connection_closes_the_oldest_handshake_and_ranks_are_not_capped(monkeypatch, num_proc, cap):
    monkeypatch.setattr(reports, "CHALLENGE_TIMEOUT_S", 120.0)  # nothing here is closed for being slow
    out = io.StringIO()
    with ReportServer("127.0.0.1", verbose=1, out=out, **({} if num_proc is None else {"num_proc": num_proc})) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(cap + 1)]
        try:
            for connection in idle:  # one at a time: each is in its handshake before the next connects
                connection.makefile("rb").readline()
            assert _closed_by_the_server(idle[0])
            _report_epoch(server.port, server.secret)  # the rank's connection closes the next oldest
            assert _closed_by_the_server(idle[1])
            assert all(_still_open(c) for c in idle[2:])
            ranks = [Reporter(server.address(1), rank=r) for r in range(3 * cap)]  # proved the secret: all stay
            with server.changed:
                assert server.changed.wait_for(lambda: sum(a == 1 for a, _ in server.ranks) == 3 * cap, timeout=60)
                assert all(r.open for (a, _), r in server.ranks.items() if a == 1)
            for reporter in ranks:
                reporter.end()
        finally:
            for connection in idle:
                connection.close()
    assert out.getvalue() == EPOCH_LINE + "\n"


# -- at a soft descriptor limit of 1024 --------------------------------------------------------
SERVER_AT_1024 = """
import json, logging, os, resource, sys, threading, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
from sparkneural.training.reports import ReportServer

warnings, warned = [], threading.Event()
class Seen(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
        warned.set()
logging.getLogger("sparkneural.training.reports").addHandler(Seen())
server = ReportServer("127.0.0.1", verbose=1)
print(server.port, server.secret, flush=True)
if sys.argv[1:] == ["fill"]:  # take every descriptor left, until the server failed to accept and a few tries more
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print("full", flush=True)
    warned.wait(15)
    time.sleep(0.5)
    for fd in held:
        os.close(fd)
sys.stdin.readline()  # the parent's rank reported: wait until the server read all of it
server.ranks_of(0, expected=1, settle_s=15)
accepting = any(t.name == "sparkneural-reports" and t.is_alive() for t in threading.enumerate())
print(json.dumps({"accepting": accepting, "warnings": warnings}), flush=True)
"""


def _stop(child, flooder=None):
    out, err = child.communicate("\n", timeout=60)
    if flooder is not None:
        flooder.stdin.close()
        flooder.wait(timeout=60)
    return out.splitlines(), err


def test_a_flood_of_idle_connections_at_a_soft_limit_of_1024_leaves_a_rank_its_way_in(tmp_path, report):
    child = _child(SERVER_AT_1024, tmp_path)
    flooder = None
    try:
        port, secret = child.stdout.readline().split()
        flooder, flood = _flood("127.0.0.1", int(port))
        _report_epoch(int(port), secret)
        lines, err = _stop(child, flooder)
    finally:
        child.kill()
        if flooder is not None:
            flooder.kill()
    report("idle connections at the 1024-limited server: opened / taken in by the server",
           f"{flood['opened']} / {flood['taken_in']}")
    assert EPOCH_LINE in lines, err
    assert json.loads(lines[-1])["accepting"] is True


def test_out_of_descriptors_the_server_says_so_once_and_accepts_again(tmp_path):
    child = _child(SERVER_AT_1024, tmp_path, "fill")
    try:
        port, secret = child.stdout.readline().split()
        assert child.stdout.readline().strip() == "full"
        _report_epoch(int(port), secret)  # accepted once the server has descriptors again
        lines, err = _stop(child)
    finally:
        child.kill()
    assert EPOCH_LINE in lines, err
    state = json.loads(lines[-1])
    assert state["accepting"] is True
    assert len(state["warnings"]) == 1 and "Too many open files" in state["warnings"][0]


# -- a Horovod fit --------------------------------------------------------------------------
FIT_UNDER_FLOOD = """
import json, os, resource, subprocess, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
from sparkneural.training import reports

flood, servers = {}, []
FLOODER, COUNT = sys.argv[1], int(sys.argv[2])
serve = reports.ReportServer.__init__
def serve_under_flood(self, *args, **kwargs):
    serve(self, *args, **kwargs)
    servers.append(self)
    flood["process"] = subprocess.Popen([sys.executable, "-c", FLOODER, self.host, str(self.port), str(COUNT)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    flood["connect"] = json.loads(flood["process"].stdout.readline())
reports.ReportServer.__init__ = serve_under_flood

from sparkneural.datasets import digits
from sparkneural.estimators import MLPClassifier
from sparkneural.session import get_spark
spark = get_spark("flood", master="local[2]", conf={"spark.ui.enabled": "false", "spark.sparkneural.dataDir": sys.argv[3]})
spark.sparkContext.setLogLevel("ERROR")
data = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label")
started = time.monotonic()
MLPClassifier(hiddenLayers=[16], epochs=3, numProc=2, seed=3, backend="horovod").fit(data)
seconds = time.monotonic() - started
flood["process"].stdin.close()
closed = json.loads(flood["process"].stdout.readline())
ranks = sorted([r.rank, r.ended] for r in servers[0].ranks.values())
print("RESULT " + json.dumps({"seconds": seconds, "flood": {**flood["connect"], **closed}, "ranks": ranks}), flush=True)
spark.stop()
"""


def test_a_horovod_fit_under_a_flood_at_a_soft_limit_of_1024_prints_every_epoch_on_the_driver(tmp_path, report):
    script = tmp_path / "fit.py"
    script.write_text(FIT_UNDER_FLOOD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run([sys.executable, str(script), FLOODER, str(FLOOD), f"file://{tmp_path}/data"],
                          capture_output=True, text=True, env=env, timeout=900)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[len("RESULT "):])
    epochs = [line for line in lines if re.match(r"epoch \d/3  loss \d+\.\d{4}  ", line)]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"], done.stdout[-4000:]
    assert result["ranks"] == [[0, True], [1, True]]  # both ranks reported to the driver, start to end
    assert "cannot report to the driver" not in done.stderr
    flood = result["flood"]
    report("horovod fit under 1,500 idle connections, soft fd limit 1024: seconds", result["seconds"])
    report("  flood: opened / taken in / closed by the server by the fit's end",
           f"{flood['opened']} / {flood['taken_in']} / {flood['closed_by_server']}")
