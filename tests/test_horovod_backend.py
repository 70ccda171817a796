"""The Horovod backend's changes to Horovod's Spark tasks, in isolation.

(Every Horovod fit in the suite runs with them; these check that they apply
only while a fit runs, that Horovod's own value comes back, and what happens
on a Horovod that is not the one they were written for.)
"""

import os

import horovod
import horovod.spark
import pytest
from horovod.spark import runner

from sparkdl.training.backends import horovod_internals as internals
from sparkdl.training.backends.horovod import WARM_SERVER_ENV, HorovodBackend

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)


def _mapper_reporting_linger(*args, **kwargs):
    def mapper(index, iterator):
        yield runner.MINIMUM_COMMAND_LIFETIME_S

    return mapper


@pytest.fixture
def patches_on(monkeypatch):
    monkeypatch.delenv(internals.PATCHES_ENV, raising=False)


def test_the_installed_horovod_has_every_private_name_the_patches_need():
    assert internals.check() == []


def test_tasks_start_the_fits_warm_server_and_wait_task_linger_s_then_horovods_value_is_back(monkeypatch, patches_on):
    started = []
    def start_server(name, executable, env):
        started.append((name, env["OMP_NUM_THREADS"], env.get("SPARKDL_SECRET_TOKEN")))

    monkeypatch.setattr(internals.warm, "start_server", start_server)
    monkeypatch.delenv("SPARKDL_SECRET_TOKEN", raising=False)
    horovod_value = runner.MINIMUM_COMMAND_LIFETIME_S
    with internals.sparkdl_tasks("server-a", {"OMP_NUM_THREADS": "3", "SPARKDL_SECRET_TOKEN": "x"}):
        mapper = internals._sparkdl_mapper(_mapper_reporting_linger)("addresses", "settings", True, False)
    assert list(mapper(0, iter([]))) == [internals.TASK_LINGER_S]
    assert started == [("server-a", "3", None)]  # the tasks carry only the variables read when torch loads
    assert internals._warm_servers == {}
    assert runner.MINIMUM_COMMAND_LIFETIME_S == horovod_value
    assert internals.TASK_LINGER_S < horovod_value


def test_horovods_mapper_is_replaced_only_inside_the_context_even_when_the_run_fails(patches_on):
    original = runner._make_mapper
    with pytest.raises(RuntimeError, match="rank failed"):
        with internals.sparkdl_tasks("server-a", {}):
            with internals.sparkdl_tasks(None, {}):  # a second fit at the same time
                assert runner._make_mapper is not original
                assert runner._make_mapper.__wrapped__ is original
            assert runner._make_mapper is not original  # the first one still runs
            raise RuntimeError("rank failed")
    assert runner._make_mapper is original


def test_a_missing_private_name_stops_the_fit_and_names_the_way_out(monkeypatch, patches_on):
    monkeypatch.delattr(runner, "_make_mapper")
    assert "missing horovod.spark.runner._make_mapper" in internals.check()
    with pytest.raises(RuntimeError) as raised:
        with internals.sparkdl_tasks(None, {}):
            pytest.fail("entered the context")
    message = str(raised.value)
    assert "horovod.spark.runner._make_mapper" in message and "SPARKDL_HOROVOD_PATCHES=0" in message
    assert f"horovod {horovod.__version__}" in message and internals.WRITTEN_FOR in message
    monkeypatch.setattr(horovod.spark, "run", lambda *args, **kwargs: pytest.fail("launched"))
    with pytest.raises(RuntimeError, match="SPARKDL_HOROVOD_PATCHES=0") as raised:
        HorovodBackend().run(spec=None)
    assert not str(raised.value).startswith("training failed")  # stopped before Horovod started, not a rank's error


def test_patches_off_leaves_horovod_untouched_even_without_its_private_names(monkeypatch):
    monkeypatch.setenv(internals.PATCHES_ENV, "0")
    original = runner._make_mapper
    with internals.sparkdl_tasks("server-a", dict(os.environ)):
        assert runner._make_mapper is original
    monkeypatch.delattr(runner, "MINIMUM_COMMAND_LIFETIME_S")
    with internals.sparkdl_tasks(None, dict(os.environ)):
        assert runner._make_mapper is original


def test_patches_off_runs_horovod_without_warm_ranks(monkeypatch):
    monkeypatch.setenv(internals.PATCHES_ENV, "0")
    launched = []

    def run(fn, args, env, **kwargs):
        launched.append((runner._make_mapper, env))
        raise ValueError("stop here")

    monkeypatch.setattr(horovod.spark, "run", run)
    original = runner._make_mapper
    with pytest.raises(RuntimeError, match="stop here"):
        HorovodBackend().run(spec=None)
    [(mapper, env)] = launched
    assert mapper is original and WARM_SERVER_ENV not in env


def test_another_horovod_version_with_every_name_warns_and_patches(monkeypatch, patches_on):
    monkeypatch.setattr(horovod, "__version__", "0.99.0")
    assert internals.check() == [f"horovod 0.99.0 is installed, sparkdl was written for horovod {internals.WRITTEN_FOR}"]
    original = runner._make_mapper
    with pytest.warns(UserWarning, match=r"horovod 0\.99\.0 is installed .* written for horovod 0\.28\.1"):
        with internals.sparkdl_tasks(None, {}):
            assert runner._make_mapper.__wrapped__ is original
    assert runner._make_mapper is original


def _die_in_thread(name, message):
    import threading

    def fail():
        raise RuntimeError(message)

    thread = threading.Thread(target=fail, name=name)
    thread.start()
    thread.join()


def test_only_horovods_own_job_cancellation_in_its_spark_thread_is_kept_quiet(monkeypatch):
    import threading

    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append((args.thread.name, str(args.exc_value))))
    cancelled = "[SPARK_JOB_CANCELLED] Job 22 cancelled part of cancelled job group horovod.spark.run.3 SQLSTATE: XXKDA"
    with internals.quiet_job_cancellation():
        _die_in_thread("Thread-7 (run_spark)", cancelled)
        _die_in_thread("Thread-8 (run_spark)", "Job aborted due to stage failure")
        _die_in_thread("Thread-9 (other)", cancelled)
    _die_in_thread("Thread-10 (run_spark)", cancelled)  # outside a run: the previous hook again
    assert seen == [("Thread-8 (run_spark)", "Job aborted due to stage failure"), ("Thread-9 (other)", cancelled),
                    ("Thread-10 (run_spark)", cancelled)]
