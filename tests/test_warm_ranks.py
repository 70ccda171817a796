"""Warm rank processes: the server forks a child per call that behaves like the caller's own process."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sparkdl.estimators import TorchEstimator
from sparkdl.training.backends import warm

pytestmark = pytest.mark.skipif(not warm.supported(), reason="warm rank processes need Linux")


def _start(name, watched_pid=None, idle_s=60.0, preload=("json",)):
    watched_pid = watched_pid or os.getpid()
    code = f"from sparkdl.training.backends.warm import serve; serve({name!r}, {watched_pid}, {idle_s!r}, preload={preload!r})"
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    assert _wait_until(lambda: _listening(name), 20)
    return process


def _listening(name):
    try:
        warm._connect(name).close()
        return True
    except OSError:
        return False


@pytest.fixture
def server(request):
    name = f"sparkdl-test-{os.getpid()}-{request.node.name[:40]}"
    process = _start(name)
    yield name, process
    process.kill()
    process.wait()


def _where_am_i(text):
    print(f"child writes {text}", flush=True)
    return os.getpid(), os.getppid(), os.environ.get("SPARKDL_TEST_VALUE"), os.getcwd(), list(sys.path)


def test_a_call_runs_in_a_child_of_the_server_with_the_callers_environment_and_output(server, capfd, tmp_path, monkeypatch):
    name, process = server
    monkeypatch.setenv("SPARKDL_TEST_VALUE", "42")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    pid, parent, value, cwd, path = warm.call(name, _where_am_i, "hello")
    assert pid not in (os.getpid(), process.pid) and parent == process.pid
    assert (value, cwd, path) == ("42", str(tmp_path), sys.path)
    assert "child writes hello" in capfd.readouterr().out


def _fails():
    raise ValueError("column 'x': expected an array")


def _dies():
    os._exit(3)


def test_an_exception_is_raised_in_the_caller_and_a_child_that_dies_is_an_error(server):
    name, _ = server
    with pytest.raises(ValueError, match="column 'x': expected an array"):
        warm.call(name, _fails)
    with pytest.raises(RuntimeError, match="ended without a result"):
        warm.call(name, _dies)
    assert warm.call(name, abs, -3) == 3  # the server goes on serving


def test_no_server_or_a_server_whose_imports_failed_is_unavailable_at_once():
    with pytest.raises(warm.Unavailable):
        warm.call(f"sparkdl-test-nobody-{os.getpid()}", abs, -1)
    name = f"sparkdl-test-broken-{os.getpid()}"
    process = _start(name, preload=("sparkdl_no_such_module",))
    try:
        began = time.monotonic()
        with pytest.raises(warm.Unavailable, match="No module named 'sparkdl_no_such_module'"):
            warm.call(name, abs, -1, ready_timeout_s=30)
        assert time.monotonic() - began < 5
    finally:
        process.kill()
        process.wait()


def _wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"


def test_a_child_ends_when_its_caller_is_killed(server, tmp_path):
    name, _ = server
    pid_file = tmp_path / "child.pid"
    caller = subprocess.Popen([sys.executable, "-c", (
        "import os, time\n"
        "from sparkdl.training.backends import warm\n"
        "def work(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        f"warm.call({name!r}, work, {str(pid_file)!r})\n"
    )])
    try:
        assert _wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30)
        child = int(pid_file.read_text())
        assert not _gone(child)
        caller.send_signal(signal.SIGKILL)
        assert _wait_until(lambda: _gone(child), 10)
    finally:
        caller.kill()
        caller.wait()


def test_the_server_exits_when_idle_or_when_the_watched_process_is_gone():
    idle = _start(f"sparkdl-test-idle-{os.getpid()}", idle_s=0.5)
    watched = subprocess.Popen(["sleep", "60"])
    orphan = _start(f"sparkdl-test-orphan-{os.getpid()}", watched_pid=watched.pid)
    try:
        assert idle.wait(timeout=15) == 0
        time.sleep(0.5)
        assert orphan.poll() is None
        watched.kill()
        watched.wait()
        assert orphan.wait(timeout=15) == 0
    finally:
        for process in (idle, watched, orphan):
            process.kill()
            process.wait()


def test_start_server_starts_one_server_per_name():
    name = f"sparkdl-test-started-{os.getpid()}"
    env = {**os.environ, warm.IDLE_ENV: "thirty"}  # not a number: the default, and no error in the Spark task
    warm.start_server(name, sys.executable, env)
    warm.start_server(name, sys.executable, env)  # finds the first, or loses the race to bind
    assert _wait_until(lambda: len(_servers(name)) == 1, 10)
    time.sleep(1)
    assert len(_servers(name)) == 1
    for pid in _servers(name):
        os.kill(pid, signal.SIGKILL)


def _servers(name):
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and name in open(f"/proc/{entry}/cmdline").read() and not _gone(int(entry)):
                found.append(int(entry))
        except OSError:
            pass
    return found


def test_the_server_name_depends_on_load_time_variables_and_the_application_only():
    env = {"PATH": "/usr/bin", "OMP_NUM_THREADS": "2"}
    name = warm.server_name(env, "/usr/bin/python3", "app-1")
    assert warm.server_name({**env, "PYTEST_CURRENT_TEST": "other", "HOME": "/x"}, "/usr/bin/python3", "app-1") == name
    assert warm.server_name({**env, "OMP_NUM_THREADS": "1"}, "/usr/bin/python3", "app-1") != name
    assert warm.server_name({**env, "LD_PRELOAD": "x.so"}, "/usr/bin/python3", "app-1") != name
    assert warm.server_name(env, "/usr/bin/python3", "app-2") != name
    assert warm.server_name(env, "/opt/python", "app-1") != name
    assert warm.enabled(env) and not warm.enabled({**env, warm.ENABLED_ENV: "0"})


def test_horovod_ranks_train_in_warm_children_with_the_same_result_as_fresh_ranks(digits_df, tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()

    def recording_net(inputShape, outputSize):
        import torch

        if "HOROVOD_RANK" in os.environ:  # in a rank, not on the driver
            parent = open(f"/proc/{os.getppid()}/cmdline").read().replace("\0", " ")
            open(record / f"{os.getpid()}.txt", "w").write(parent)
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(inputShape)), outputSize))

    train = digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label").limit(300)
    params = dict(architecture=recording_net, inputShape=[64], epochs=2, numProc=2, backend="horovod", verbose=0, seed=5)

    def parents():
        found = [p.read_text() for p in record.iterdir()]
        for p in record.iterdir():
            p.unlink()
        return found

    warm_model = TorchEstimator(**params).fit(train)
    warm_parents = parents()
    monkeypatch.setenv(warm.ENABLED_ENV, "0")
    fresh_model = TorchEstimator(**params).fit(train)
    fresh_parents = parents()
    assert len(warm_parents) == 2 and all("serve('sparkdl-warm-ranks-" in p for p in warm_parents)
    assert len(fresh_parents) == 2 and not any("serve(" in p for p in fresh_parents)
    assert warm_model.rankDigests == fresh_model.rankDigests
    for name, value in fresh_model.weights.items():
        np.testing.assert_array_equal(value, warm_model.weights[name])
