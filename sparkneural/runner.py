"""Running a pipeline: the conf, the SparkSession, the output directory and metrics.json.

A pipeline is a file in ``pipelines/`` defining ``DEFAULTS`` (its config
schema), optionally ``PARAMS`` (config sections holding estimator Params)
and ``main(spark, conf) -> dict`` of metrics. The same code runs it from
``sparkneural run``, ``python pipelines/x.py`` and ``spark-submit pipelines/x.py``.

An installed wheel carries the pipelines and their confs as
``sparkneural/pipelines/`` and ``sparkneural/conf/``; in a checkout they are
the top-level ``pipelines/`` and ``conf/`` directories.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from sparkneural.config import load_conf
from sparkneural.former_names import environ_value
from sparkneural.session import _submitted_conf


def _shipped(name: str) -> Path:
    """``name`` inside the installed package, else beside the package (a checkout)."""
    package = Path(__file__).resolve().parent
    return package / name if (package / name).is_dir() else package.parent / name


def pipelines_dir() -> Path:
    """Where the pipeline files are: $SPARKNEURAL_PIPELINES, else the ones shipped with the package."""
    return Path(environ_value("SPARKNEURAL_PIPELINES") or _shipped("pipelines"))


def conf_path(path: str | None) -> str | None:
    """``path``, or the shipped conf of that name when ``path`` is a missing relative ``conf/<name>.yaml``.

    So ``sparkneural run digits_mlp --conf conf/digits_mlp.yaml`` works in any
    directory; a ``conf/`` of the working directory wins.
    """
    if path is None or os.path.exists(path):
        return path
    relative = Path(path)
    if not relative.is_absolute() and relative.parent == Path("conf") and (_shipped("conf") / relative.name).is_file():
        return str(_shipped("conf") / relative.name)
    return path


def available() -> dict[str, str]:
    """Pipeline name -> its one-line purpose (the first line of its docstring)."""
    found = {}
    for file in sorted(pipelines_dir().glob("*.py")):
        if file.name.startswith("_"):
            continue
        found[file.stem] = _first_docstring_line(file)
    return found


def _first_docstring_line(file: Path) -> str:
    import ast

    doc = ast.get_docstring(ast.parse(file.read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def load_pipeline(name: str) -> ModuleType:
    file = pipelines_dir() / f"{name}.py"
    if not file.exists():
        raise ValueError(f"pipeline {name!r} not found; available pipelines are {sorted(available())}")
    spec = importlib.util.spec_from_file_location(f"sparkneural_pipeline_{name}", file)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def parse_args(description: str, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", help="YAML config (see conf/); its keys override the pipeline's defaults")
    add_remote_argument(parser)
    parser.add_argument("overrides", nargs="*", help="key=value settings, dotted keys for nesting (model.epochs=5)")
    return parser.parse_intermixed_args(list(argv))


def add_remote_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--remote", help="Spark Connect URL (sc://host:port) to run on, instead of the config's "
                        "spark.master; SPARK_REMOTE is used when this is not given")


def run(module: ModuleType, confPath: str | None = None, overrides: Sequence[str] = (),
        remote: str | None = None) -> dict[str, Any]:
    """Load the conf, start (or reuse) Spark, run ``module.main`` and write metrics.json.

    With ``remote`` (or ``SPARK_REMOTE``), Spark is a Spark Connect client of
    that server and the config's ``spark.master`` is not used.
    """
    from sparkneural.session import get_spark, set_log_level

    conf = load_conf(module.DEFAULTS, conf_path(confPath), overrides, getattr(module, "PARAMS", None))
    settings = conf.get("spark", {})
    remote = remote or os.environ.get("SPARK_REMOTE") or None
    # A Connect server, or a master given to spark-submit, wins over the config's master.
    master = None if remote or "spark.master" in _submitted_conf() else settings.get("master")
    spark = get_spark(settings.get("appName", "sparkneural"), master=master, conf=settings.get("conf"), remote=remote)
    set_log_level(spark, settings.get("logLevel", "ERROR"))
    output = conf.get("output")
    if output:
        os.makedirs(output, exist_ok=True)
    started = time.perf_counter()
    metrics = module.main(spark, conf)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    if output:
        with open(os.path.join(output, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2, default=float)
        print(f"wrote {os.path.join(output, 'metrics.json')}")
    return metrics


def main_entry(module_name: str) -> None:
    """The ``__main__`` of a pipeline file: ``python pipelines/x.py --conf ... key=value``."""
    module = sys.modules[module_name]
    args = parse_args((module.__doc__ or "").strip().splitlines()[0], sys.argv[1:])
    run(module, args.conf, args.overrides, args.remote)
