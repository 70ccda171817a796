"""The warm rank server and its callers admit only the processes of their own user, both ways.

Each test runs one end as uid 65534 (``nobody``) in a forked child, so it needs root.
"""

import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from sparkdl.training.backends import warm

NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(not warm.supported(), reason="warm rank processes need Linux"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching to another uid needs root"),
]


class _MakesDirectory:
    """Unpickling this makes a directory: it stands for any code a peer could make us run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _framed(value) -> bytes:
    data = pickle.dumps(value)
    return struct.pack("!Q", len(data)) + data


def _as_nobody(body, *args):
    """Fork a child that runs ``body(report_fd, *args)`` as uid 65534; returns its pid and its reports' fd."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            except OSError as err:
                os.write(write_fd, f"cannot switch to uid {NOBODY}: {err}\n".encode())
                return
            body(write_fd, *args)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _report_lines(read_fd, count, timeout_s=60.0):
    """The next ``count`` lines from the child, read unbuffered so that none waits in a buffer."""
    text = ""
    while text.count("\n") < count:
        ready, _, _ = select.select([read_fd], [], [], timeout_s)
        assert ready, f"no report from the other user's process after {timeout_s} s (got {text!r})"
        chunk = os.read(read_fd, 1).decode()
        if not chunk:
            break
        text += chunk
    if text.startswith("cannot switch"):
        pytest.skip(text.strip())
    return text.splitlines()


def _stop(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _drain(connection, quiet_s):
    """Bytes and descriptors received until the peer closes or stays quiet for ``quiet_s``."""
    connection.settimeout(quiet_s)
    size = fds = 0
    while True:
        try:
            data, received, _, _ = socket.recv_fds(connection, 1 << 16, 4)
        except (TimeoutError, ConnectionResetError):
            return size, fds
        for fd in received:
            os.close(fd)
        size, fds = size + len(data), fds + len(received)
        if not data:
            return size, fds


def _squat(report_fd, name, reply):
    """Hold ``name`` like a server; answer each caller with ``reply`` and report what it sent."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(8)
    os.write(report_fd, b"ready\n")
    while True:
        connection, _ = listener.accept()
        size, fds = _drain(connection, quiet_s=1.0)
        try:
            connection.sendall(reply)
        except OSError:
            pass
        more, more_fds = _drain(connection, quiet_s=5.0)
        connection.close()
        os.write(report_fd, f"{size + more} {fds + more_fds}\n".encode())


def _rank_work(path):
    os.mkdir(path)


def test_a_rank_sends_nothing_to_and_unpickles_nothing_from_another_users_process_on_the_server_name(tmp_path, caplog):
    env = dict(os.environ)
    name = warm.server_name(env, sys.executable, f"app-squatted-{os.getpid()}")
    payload_ran = tmp_path / "payload-ran"
    rank_work = tmp_path / "rank-work"
    reply = _framed(("unavailable", _MakesDirectory(str(payload_ran))))
    pid, reports = _as_nobody(_squat, name, reply)
    try:
        assert _report_lines(reports, 1) == ["ready"]
        with caplog.at_level(logging.WARNING, logger=warm.__name__):
            warm.start_server(name, sys.executable, env)
        with pytest.raises(warm.Unavailable) as refused:
            warm.call(name, _rank_work, str(rank_work))
        received = _report_lines(reports, 2)
    finally:
        _stop(pid)
        os.close(reports)
    assert received == ["0 0", "0 0"], "bytes and descriptors the other user's process received (probe, call)"
    assert not payload_ran.exists()
    assert not rank_work.exists()  # it ran neither here nor there: the caller runs it itself
    assert f"held by uid {NOBODY}" in str(refused.value)
    assert any(f"held by uid {NOBODY}" in r.getMessage() for r in caplog.records)


def _connect_and_listen(report_fd, name, request):
    """Connect to ``name`` as a client would, send ``request`` and report what came back."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect("\0" + name)
    try:
        socket.send_fds(connection, [b"f"], [1, 2])
        connection.sendall(request)
    except OSError:
        pass
    size, fds = _drain(connection, quiet_s=30.0)
    os.write(report_fd, f"{size} {fds}\n".encode())


def _wait_until_listening(name, server, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            warm._connect(name).close()
            return
        except OSError:
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"the server did not listen within {timeout_s} s"
            time.sleep(0.1)


def test_the_server_sends_nothing_to_and_runs_nothing_for_another_users_process(tmp_path):
    import cloudpickle

    name = f"sparkdl-test-guarded-{os.getpid()}"
    code = f"from sparkdl.training.backends.warm import serve; serve({name!r}, {os.getpid()}, 60.0, preload=('json',))"
    server = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    payload_ran = tmp_path / "payload-ran"
    try:
        _wait_until_listening(name, server)
        assert warm.call(name, abs, -3, ready_timeout_s=60) == 3  # serving its own user
        request = _framed((dict(os.environ), "/", list(sys.path), cloudpickle.dumps((os.mkdir, (str(payload_ran),)))))
        pid, reports = _as_nobody(_connect_and_listen, name, request)
        try:
            received = _report_lines(reports, 1)
        finally:
            _stop(pid)
            os.close(reports)
        assert received == ["0 0"], "bytes and descriptors the other user's process received"
        assert not payload_ran.exists()
        assert warm.call(name, abs, -4) == 4  # and goes on serving its own user
    finally:
        server.kill()
        server.wait()
