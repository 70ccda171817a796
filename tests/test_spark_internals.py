"""``sparkneural.spark_internals`` against a real local[2] SparkContext, and where what it reads is not there.

On local[2] the values are known: two task slots, one executor ("driver")
that is active, a local master, and Python workers that run under the
driver. Stand-ins without a JVM, or whose JVM object lacks the member,
give None; an error a present member throws is raised, not taken for
"not there".
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from py4j.protocol import Py4JJavaError
from pyspark import SparkContext

from sparkneural import spark_internals

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)


def _with_scala_context(make):
    """A stand-in SparkContext whose ``_jsc.sc()`` returns (or throws) what ``make()`` does."""
    return SimpleNamespace(_jsc=SimpleNamespace(sc=make))


def test_active_context_is_the_sessions_and_none_without_one(spark, monkeypatch):
    assert spark_internals.active_context() is spark.sparkContext
    monkeypatch.setattr(SparkContext, "_active_spark_context", None)  # as in a Spark Connect client
    assert spark_internals.active_context() is None


def test_local_master_is_true_on_local_2_and_false_on_a_cluster_or_without_a_context(spark, monkeypatch):
    assert spark_internals.local_master() is True
    monkeypatch.setattr(SparkContext, "_active_spark_context", SimpleNamespace(master="spark://127.0.0.1:7077"))
    assert spark_internals.local_master() is False
    monkeypatch.setattr(SparkContext, "_active_spark_context", None)
    assert spark_internals.local_master() is False


def test_task_slots_on_local_2_are_two(spark):
    assert spark_internals.task_slots(spark.sparkContext) == 2


def test_executor_states_on_local_2_are_the_driver_alone_and_active(spark):
    assert spark_internals.executor_states(spark.sparkContext) == {"driver": None}


def test_executor_removal_is_none_for_an_active_executor_and_for_one_spark_never_had(spark):
    assert spark_internals.executor_removal(spark.sparkContext, "driver", wait_s=0) is None
    assert spark_internals.executor_removal(spark.sparkContext, "no-such-executor", wait_s=0) is None


def test_executor_removal_waits_for_the_reason_the_listener_records_later(monkeypatch):
    answers = iter([{"3": None}, {"3": None}, {"3": "Command exited with code 137"}])
    monkeypatch.setattr(spark_internals, "executor_states", lambda context: next(answers))
    assert spark_internals.executor_removal(object(), "3", wait_s=60) == "Command exited with code 137"


@pytest.mark.parametrize("context", [
    SimpleNamespace(master="local[2]"),  # no JVM at all
    SimpleNamespace(_jsc=None),  # a stopped SparkContext
], ids=["no-jvm", "stopped"])
def test_members_read_through_py4j_are_none_where_the_context_has_no_jvm(context):
    assert spark_internals.task_slots(context) is None
    assert spark_internals.executor_states(context) is None
    assert spark_internals.executor_removal(context, "3", wait_s=0) is None


def test_members_the_jvm_object_does_not_have_give_none(spark):
    context = _with_scala_context(lambda: spark._jvm.java.util.ArrayList())  # has neither member
    assert spark_internals.task_slots(context) is None
    assert spark_internals.executor_states(context) is None


def test_an_error_a_present_member_throws_is_raised_not_taken_for_absent(spark):
    context = _with_scala_context(lambda: spark._jvm.java.util.Optional.empty().get())
    with pytest.raises(Py4JJavaError, match="NoSuchElementException"):
        spark_internals.task_slots(context)
    with pytest.raises(Py4JJavaError, match="NoSuchElementException"):
        spark_internals.executor_states(context)
    context = SimpleNamespace(_jsc=SimpleNamespace())  # a bug on the Python side (no ``sc``) is not hidden either
    with pytest.raises(AttributeError):
        spark_internals.task_slots(context)


def test_a_python_worker_on_local_2_runs_under_the_driver(spark):
    identities = spark.sparkContext.parallelize(range(2), 2).map(lambda _: spark_internals.executor_identity()).collect()
    assert identities == [("driver", None), ("driver", None)]


def test_executor_identity_on_kubernetes_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPARK_EXECUTOR_ID", "7")
    monkeypatch.setenv("SPARK_EXECUTOR_POD_IP", "10.1.2.3")
    assert spark_internals.executor_identity() == ("7", "10.1.2.3")


def _identity_below(*parent_args: str) -> str:
    """``executor_identity()`` in a child of a Python process started with ``parent_args`` after its code."""
    child = "from sparkneural.spark_internals import executor_identity; print(executor_identity())"
    parent = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {child!r}]))"
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_EXECUTOR_ID", "SPARK_EXECUTOR_POD_IP")}
    done = subprocess.run([sys.executable, "-c", parent, *parent_args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_executor_identity_comes_from_the_executor_id_and_hostname_arguments_of_an_ancestor():
    assert _identity_below("--executor-id", "4", "--hostname", "10.0.0.9") == "('4', '10.0.0.9')"
    assert _identity_below("--executor-id", "5") == "('5', None)"


def test_executor_identity_outside_spark_is_unknown():
    assert _identity_below() == "(None, None)"
