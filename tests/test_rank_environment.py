"""The environment a rank sees: its executor's own, plus only the allow-listed variables of the driver."""

import json
import os
import re

import numpy as np
import pytest

from sparkneural.estimators import TorchEstimator

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)

RANK_ENV_CONF = "spark.sparkneural.rankEnv"
DRIVER_ONLY = {
    "AWS_SECRET_ACCESS_KEY": "sentinel-secret",
    "MY_TOKEN": "sentinel-token",
    "JAVA_HOME": "/driver-only/java",
    "HADOOP_CONF_DIR": "/driver-only/hadoop-conf",
    "LD_LIBRARY_PATH": "/driver-only/lib",
}
FORWARDED = {"SPARKNEURAL_RANK_ENV_PROBE": "1", "MY_SETTING": "x", "MYAPP_LEVEL": "debug", "HOROVOD_LOG_LEVEL": "warning"}
PROBED = (*DRIVER_ONLY, *FORWARDED, "PATH")


def test_forwarded_keeps_the_allow_listed_prefixes_and_the_named_variables_only():
    from sparkneural.training.backends.environment import forwarded

    driver = {
        "HOROVOD_CYCLE_TIME": "5", "NCCL_DEBUG": "INFO", "GLOO_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "2",
        "KMP_AFFINITY": "compact", "MKL_NUM_THREADS": "2", "SPARKNEURAL_WARM_RANKS": "0",
        "MY_SETTING": "x", "MYAPP_LEVEL": "debug", "MYAPP_MODE": "fast",
        "AWS_SECRET_ACCESS_KEY": "secret", "AWS_ACCESS_KEY_ID": "key", "GITHUB_TOKEN": "token", "HF_TOKEN": "token",
        "PATH": "/driver/bin", "LD_LIBRARY_PATH": "/driver/lib", "JAVA_HOME": "/driver/java",
        "HADOOP_CONF_DIR": "/driver/hadoop", "PYTHONPATH": "/driver/src", "TORCH_HOME": "/driver/torch",
        "MY_SETTING_OTHER": "not named", "XMYAPP_LEVEL": "not the prefix",
    }
    expected = {k: driver[k] for k in ("HOROVOD_CYCLE_TIME", "NCCL_DEBUG", "GLOO_SOCKET_IFNAME", "OMP_NUM_THREADS",
                                       "KMP_AFFINITY", "MKL_NUM_THREADS", "SPARKNEURAL_WARM_RANKS",
                                       "MY_SETTING", "MYAPP_LEVEL", "MYAPP_MODE")}
    assert forwarded(driver, ["MY_SETTING", "MYAPP_*"]) == expected
    assert forwarded(driver) == {k: v for k, v in expected.items() if not k.startswith("MY")}


def test_forwarded_never_carries_the_drivers_own_gpu_addresses():
    from sparkneural.training.backends.environment import forwarded

    driver = {"SPARKNEURAL_GPU_ADDRESSES": "0", "SPARKNEURAL_X": "1"}
    assert forwarded(driver, ["SPARKNEURAL_GPU_ADDRESSES"]) == {"SPARKNEURAL_X": "1"}


@pytest.mark.parametrize("value", ["MY_SETTING,bad-name", "*", "MY*SETTING", "1ST"])
def test_a_rank_env_entry_that_is_not_a_variable_name_is_refused_naming_the_conf(value):
    from sparkneural.training.backends.environment import parse_names

    bad = value.split(",")[-1]
    with pytest.raises(ValueError, match=rf"spark\.sparkneural\.rankEnv: expected environment variable names.*found {re.escape(repr(bad))}"):
        parse_names(value)
    assert parse_names(" MY_SETTING , MYAPP_* ,") == ("MY_SETTING", "MYAPP_*")


def test_rank_env_reads_the_names_from_the_spark_conf(spark, monkeypatch):
    from sparkneural.training.backends.environment import rank_env

    monkeypatch.setenv("MY_SETTING", "x")
    monkeypatch.setenv("MYAPP_LEVEL", "debug")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert "MY_SETTING" not in rank_env()
    spark.conf.set(RANK_ENV_CONF, "MY_SETTING,MYAPP_*")
    try:
        env = rank_env()
    finally:
        spark.conf.unset(RANK_ENV_CONF)
    assert env["MY_SETTING"] == "x" and env["MYAPP_LEVEL"] == "debug" and "AWS_SECRET_ACCESS_KEY" not in env


def test_a_malformed_rank_env_conf_fails_the_fit_before_any_data_is_written(spark, digits_df, monkeypatch):
    from sparkneural.estimators import base

    def no_cluster_work(*args, **kwargs):
        raise AssertionError("the training data was materialised before the conf was checked")

    monkeypatch.setattr(base, "materialize", no_cluster_work)
    spark.conf.set(RANK_ENV_CONF, "MY_SETTING,bad-name")
    try:
        with pytest.raises(ValueError, match=r"spark\.sparkneural\.rankEnv: .*found 'bad-name'"):
            TorchEstimator(inputShape=[64], numProc=2, backend="torch_distributor", epochs=1, verbose=0).fit(digits_df)
    finally:
        spark.conf.unset(RANK_ENV_CONF)


@pytest.mark.parametrize("backend", ["horovod", "torch_distributor"])
def test_a_rank_sees_its_executors_environment_and_only_the_allow_listed_driver_variables(spark, digits_df, tmp_path, backend):
    records = tmp_path / "records"
    records.mkdir()
    driver_pid = os.getpid()

    def recording_net(inputShape, outputSize):
        import torch

        if os.getpid() != driver_pid:  # a rank; the estimator also builds the network once on the driver
            (records / f"{os.getpid()}.json").write_text(json.dumps({k: os.environ.get(k) for k in PROBED}))
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(inputShape)), outputSize))

    train = digits_df.selectExpr("transform(features, v -> v / 16.0) AS features", "label").limit(200)
    saved = {k: os.environ.get(k) for k in PROBED}
    try:
        # Set after the Spark session started: its Python workers were forked with the environment
        # the JVM got at its start, so only what sparkneural forwards can reach a rank.
        os.environ.update(DRIVER_ONLY)
        os.environ.update(FORWARDED)
        os.environ["PATH"] = "/driver-only/bin:" + os.environ["PATH"]
        spark.conf.set(RANK_ENV_CONF, "MY_SETTING, MYAPP_*")
        executor = spark.sparkContext.parallelize([0], 1).map(lambda _: {k: os.environ.get(k) for k in PROBED}).collect()[0]
        TorchEstimator(architecture=recording_net, inputShape=[64], epochs=1, numProc=2, backend=backend, verbose=0).fit(train)
    finally:
        spark.conf.unset(RANK_ENV_CONF)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert all(executor[k] != v for k, v in {**DRIVER_ONLY, **FORWARDED}.items()), executor  # the premise
    assert not executor["PATH"].startswith("/driver-only"), executor["PATH"]
    ranks = [json.loads(p.read_text()) for p in records.iterdir()]
    assert len(ranks) == 2
    for seen in ranks:
        for name in DRIVER_ONLY:
            assert seen[name] == executor[name], (name, seen[name])  # the executor's own value, not the driver's
        assert seen["PATH"] == executor["PATH"]
        assert {k: seen[k] for k in FORWARDED} == FORWARDED
