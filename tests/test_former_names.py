"""The former name's conf keys and environment variables keep working for one release, with a warning."""

import warnings

import pytest

from sparkneural import runner
from sparkneural.data.materialize import data_dir_url
from sparkneural.former_names import conf_value, environ_value
from sparkneural.training.backends import environment


@pytest.fixture
def conf_set(spark):
    """Set (value) or unset (None) Spark conf keys for one test, then put back what the session had."""
    before = {}

    def put(key, value):
        before.setdefault(key, spark.conf.get(key, None))
        spark.conf.unset(key) if value is None else spark.conf.set(key, value)

    yield put
    for key, value in before.items():
        spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def test_former_data_dir_conf_is_used_with_a_warning_naming_the_new_key(spark, conf_set, tmp_path):
    conf_set("spark.sparkneural.dataDir", None)
    conf_set("spark.sparkdl.dataDir", str(tmp_path))
    with pytest.warns(FutureWarning, match=r"spark\.sparkdl\.dataDir is deprecated .* set spark\.sparkneural\.dataDir"):
        assert data_dir_url(spark, None) == str(tmp_path)


def test_new_conf_key_wins_over_the_former_one_without_a_warning(spark, conf_set, tmp_path):
    conf_set("spark.sparkneural.dataDir", str(tmp_path / "new"))
    conf_set("spark.sparkdl.dataDir", str(tmp_path / "former"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data_dir_url(spark, None) == str(tmp_path / "new")


def test_former_rank_env_conf_names_the_forwarded_variables(spark, conf_set):
    conf_set("spark.sparkdl.rankEnv", "MYAPP_*,TORCH_DISTRIBUTED_DEBUG")
    with pytest.warns(FutureWarning, match="spark.sparkneural.rankEnv"):
        names = environment.configured_names()
    assert names == ("MYAPP_*", "TORCH_DISTRIBUTED_DEBUG")


def test_conf_value_passes_other_keys_through_untouched():
    conf = {"spark.sql.shuffle.partitions": "4", "spark.sparkdl.shuffle": "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert conf_value(conf, "spark.sql.shuffle.partitions") == "4"
        assert conf_value(conf, "spark.sparkneural.reportPort") is None


def test_former_environment_variable_is_read_and_forwarded_to_ranks(monkeypatch, tmp_path):
    monkeypatch.delenv("SPARKNEURAL_PIPELINES", raising=False)
    monkeypatch.setenv("SPARKDL_PIPELINES", str(tmp_path))
    with pytest.warns(FutureWarning, match="SPARKDL_PIPELINES is deprecated .* set SPARKNEURAL_PIPELINES"):
        assert runner.pipelines_dir() == tmp_path
    driver = {"SPARKDL_NOTEBOOK_SMALL": "1", "SPARKNEURAL_WARM_RANKS": "0", "HOME": "/home/driver"}
    assert environment.forwarded(driver) == {"SPARKDL_NOTEBOOK_SMALL": "1", "SPARKNEURAL_WARM_RANKS": "0"}


def test_new_environment_variable_wins_over_the_former_one():
    environ = {"SPARKNEURAL_PIPELINES": "/new", "SPARKDL_PIPELINES": "/former"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert environ_value("SPARKNEURAL_PIPELINES", environ) == "/new"
    assert environ_value("SPARKNEURAL_PIPELINES", {}) is None
