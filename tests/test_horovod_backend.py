"""The Horovod backend's changes to Horovod's Spark tasks, in isolation.

(Every Horovod fit in the suite runs with them; these check that they apply
only while a fit runs, and that Horovod's own value comes back.)
"""

import pytest
from horovod.spark import runner

from sparkdl.training.backends import horovod as backend


def _mapper_reporting_linger(*args, **kwargs):
    def mapper(index, iterator):
        yield runner.MINIMUM_COMMAND_LIFETIME_S

    return mapper


def test_tasks_start_the_fits_warm_server_and_wait_task_linger_s_then_horovods_value_is_back(monkeypatch):
    started = []
    def start_server(name, executable, env):
        started.append((name, env["OMP_NUM_THREADS"], env.get("SPARKDL_SECRET_TOKEN")))

    monkeypatch.setattr(backend.warm, "start_server", start_server)
    monkeypatch.delenv("SPARKDL_SECRET_TOKEN", raising=False)
    horovod_value = runner.MINIMUM_COMMAND_LIFETIME_S
    with backend._sparkdl_tasks("server-a", {"OMP_NUM_THREADS": "3", "SPARKDL_SECRET_TOKEN": "x"}):
        mapper = backend._sparkdl_mapper(_mapper_reporting_linger)("addresses", "settings", True, False)
    assert list(mapper(0, iter([]))) == [backend.TASK_LINGER_S]
    assert started == [("server-a", "3", None)]  # the tasks carry only the variables read when torch loads
    assert backend._warm_servers == {}
    assert runner.MINIMUM_COMMAND_LIFETIME_S == horovod_value
    assert backend.TASK_LINGER_S < horovod_value


def test_horovods_mapper_is_replaced_only_inside_the_context_even_when_the_run_fails():
    original = runner._make_mapper
    with pytest.raises(RuntimeError, match="rank failed"):
        with backend._sparkdl_tasks("server-a", {}):
            with backend._sparkdl_tasks(None, {}):  # a second fit at the same time
                assert runner._make_mapper is not original
                assert runner._make_mapper.__wrapped__ is original
            assert runner._make_mapper is not original  # the first one still runs
            raise RuntimeError("rank failed")
    assert runner._make_mapper is original
