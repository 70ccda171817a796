"""The ways users run pipelines: sparkneural run, spark-submit, and the config they pass."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparkneural.config import ConfigError, load_conf
from sparkneural.estimators import MLPClassifier

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULTS = {"spark": {"master": "local[2]"}, "seed": 1, "rate": 0.5, "layers": [4], "model": {}}


def test_config_merges_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\nmodel:\n  epochs: 4\nspark:\n  master: local[1]\n")
    conf = load_conf(DEFAULTS, str(path), ["model.learningRate=0.1", "rate=1", "layers=[8, 2]"], params={"model": MLPClassifier})
    assert conf == {"spark": {"master": "local[1]"}, "seed": 3, "rate": 1, "layers": [8, 2], "model": {"epochs": 4, "learningRate": 0.1}}


def test_an_unknown_key_is_an_error_listing_the_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sede: 3\n")
    with pytest.raises(ConfigError, match=r"config key 'sede' is unknown; valid keys here are \['layers', 'model', 'rate', 'seed', 'spark'\]"):
        load_conf(DEFAULTS, str(path))
    with pytest.raises(ConfigError, match=r"config key 'model.epoch': unknown Param of MLPClassifier; valid keys are \[.*'epochs'"):
        load_conf(DEFAULTS, None, ["model.epoch=3"], params={"model": MLPClassifier})


def test_a_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"config key 'seed': expected int, found str 'x'"):
        load_conf(DEFAULTS, None, ["seed=x"])
    with pytest.raises(ConfigError, match=r"config key 'spark.master': expected str, found list"):
        load_conf(DEFAULTS, None, ["spark.master=[1]"])


def test_every_pipeline_has_a_conf_that_validates():
    from sparkneural import runner

    for name in runner.available():
        module = runner.load_pipeline(name)
        conf_file = ROOT / "conf" / f"{name}.yaml"
        assert conf_file.exists(), f"conf/{name}.yaml is missing"
        load_conf(module.DEFAULTS, str(conf_file), params=getattr(module, "PARAMS", None))


def _env():
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def test_sparkneural_list_names_each_pipeline_with_its_purpose():
    out = subprocess.run([str(BIN / "sparkneural"), "list"], capture_output=True, text=True, check=True, env=_env()).stdout
    assert "digits_mlp" in out and "Digits classifier" in out


def test_sparkneural_run_with_a_bad_key_exits_with_the_valid_keys():
    result = subprocess.run([str(BIN / "sparkneural"), "run", "digits_mlp", "--conf", "conf/digits_mlp.yaml", "modle.epochs=2"],
                            capture_output=True, text=True, cwd=ROOT, env=_env())
    assert result.returncode == 2
    assert "config key 'modle' is unknown; valid keys here are" in result.stderr


FAST = ["model.epochs=3", "model.earlyStoppingPatience=null"]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("form", ["sparkneural run", "spark-submit"])
def test_digits_mlp_runs_end_to_end_and_writes_metrics_plots_and_model(form, tmp_path):
    output = tmp_path / "out"
    if form == "sparkneural run":
        command = [str(BIN / "sparkneural"), "run", "digits_mlp", "--conf", "conf/digits_mlp.yaml"]
    else:
        command = [str(BIN / "spark-submit"), "--master", "local[2]", "pipelines/digits_mlp.py", "--conf", "conf/digits_mlp.yaml"]
    result = subprocess.run(command + [f"output={output}", *FAST], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=380)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and 0.5 < metrics["test_accuracy"] <= 1.0
    assert "test accuracy" in result.stdout
    for picture in ("training_curves.png", "confusion_matrix.png"):
        assert (output / picture).stat().st_size > 10_000
    assert (output / "model" / "metadata").is_dir()


def test_a_missing_relative_conf_path_reads_the_conf_shipped_with_the_package(tmp_path, monkeypatch):
    from sparkneural import runner

    monkeypatch.chdir(tmp_path)
    assert runner.conf_path("conf/digits_mlp.yaml") == str(ROOT / "conf" / "digits_mlp.yaml")
    assert runner.conf_path("conf/no_such_pipeline.yaml") == "conf/no_such_pipeline.yaml"
    assert runner.conf_path("elsewhere/digits_mlp.yaml") == "elsewhere/digits_mlp.yaml"
    assert runner.conf_path(None) is None
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "digits_mlp.yaml").write_text("seed: 3\n")
    assert runner.conf_path("conf/digits_mlp.yaml") == "conf/digits_mlp.yaml"


def test_sparkneural_build_horovod_is_listed_in_the_help():
    out = subprocess.run([str(BIN / "sparkneural"), "--help"], capture_output=True, text=True, check=True, env=_env()).stdout
    assert "build-horovod" in out and "list" in out and "run" in out
