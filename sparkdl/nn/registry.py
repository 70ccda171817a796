"""Architectures by name: ``build("mlp", inputShape=[64], outputSize=10, ...)``.

An architecture is a constructor taking JSON-serialisable keyword arguments.
The name and those arguments are what a saved model stores beside its
weights, so a model is rebuilt from its files without running pickled code.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class or function decorator that makes an architecture buildable by ``name``."""

    def add(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not constructor:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = constructor
        return constructor

    return add


def names() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Callable[..., nn.Module]:
    """The constructor registered under ``name``; a ValueError lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"architecture: unknown name {name!r}; expected one of {names()}"
        ) from None


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Reject keyword arguments the constructor does not take, or that are not JSON."""
    constructor = get(name)
    try:
        json.dumps(kwargs)
    except TypeError as err:
        raise TypeError(
            f"architectureParams: expected JSON-serialisable values, found {err}"
        ) from None
    signature = inspect.signature(constructor)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        valid = sorted(p for p in signature.parameters if p != "self")
        raise ValueError(
            f"architectureParams: {name!r} takes no parameter(s) {unknown}; "
            f"valid ones are {valid}"
        )


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build the architecture ``name`` with ``kwargs``."""
    return get(name)(**kwargs)
