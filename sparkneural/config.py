"""Pipeline configuration: YAML over a pipeline's defaults, validated, with key=value overrides.

The defaults define the schema: every key a config may set appears there,
and a value must have the type of its default (ints are accepted for
floats; a default of None accepts anything; an empty mapping, such as
``spark.conf``, accepts any keys). Sections whose keys are the
Params of an estimator (e.g. ``model``) are checked against those Params.

>>> conf = load_conf(DEFAULTS, "conf/digits_mlp.yaml", ["model.epochs=5"], params={"model": MLPClassifier})
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import yaml


class ConfigError(ValueError):
    """A config key that is unknown or has the wrong type."""


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def _check_type(key: str, default: Any, value: Any) -> None:
    if default is None or value is None:
        return
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"config key {key!r}: expected {_type_name(default)}, found {_type_name(value)} {value!r}")


def _merge(base: dict, update: Mapping, prefix: str, params: Mapping[str, type]) -> None:
    if not isinstance(update, Mapping):
        raise ConfigError(f"config key {prefix.rstrip('.') or '<top level>'!r}: expected a mapping, found {_type_name(update)}")
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        section = prefix.rstrip(".")
        if section in params:
            estimator = params[section]()
            if not estimator.hasParam(str(key)):
                valid = sorted(p.name for p in estimator.params)
                raise ConfigError(f"config key {dotted!r}: unknown Param of {type(estimator).__name__}; valid keys are {valid}")
            try:
                estimator._set(**{str(key): value})  # the Param's own type converter judges the value
            except (TypeError, ValueError) as err:
                raise ConfigError(f"config key {dotted!r}: not a valid {type(estimator).__name__}.{key} ({err})") from None
            base[key] = value
            continue
        if key not in base:
            raise ConfigError(f"config key {dotted!r} is unknown; valid keys here are {sorted(base)}")
        if base[key] == {} and dotted not in params:  # an empty default mapping is free-form (e.g. spark.conf)
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {dotted!r}: expected mapping, found {_type_name(value)}")
            base[key] = {**base[key], **value}
        elif isinstance(base[key], dict) and (dotted in params or isinstance(value, Mapping)):
            _merge(base[key], value, dotted + ".", params)
        else:
            _check_type(dotted, base[key], value)
            base[key] = value


def load_conf(
    defaults: Mapping[str, Any],
    path: str | None = None,
    overrides: Sequence[str] = (),
    params: Mapping[str, type] | None = None,
) -> dict[str, Any]:
    """``defaults`` updated by the YAML file at ``path`` and by ``key=value`` overrides.

    Override values are parsed as YAML (``model.epochs=5``, ``model.hiddenLayers=[64,32]``).
    ``params`` maps a section name to the estimator class whose Params it holds.
    """
    conf = copy.deepcopy(dict(defaults))
    params = dict(params or {})
    if path:
        try:
            with open(path) as f:
                loaded = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path!r} not found") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path!r} is not valid YAML: {err}") from None
        _merge(conf, loaded, "", params)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value (dotted keys for nesting, e.g. model.epochs=5)")
        update: dict[str, Any] = {}
        target = update
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = yaml.safe_load(text)
        _merge(conf, update, "", params)
    return conf
