"""Architectures by name: ``build("mlp", inputShape=[64], outputSize=10, ...)``.

An architecture is a constructor taking JSON-serialisable keyword arguments.
The name and those arguments are what a saved model stores beside its
weights, so a model is rebuilt from its files without running pickled code.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
from torch.nn.modules import module as module_hooks

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


class TooManyRegistrations(ValueError):
    """Construction registered more modules, parameters and buffers than allowed."""


def meta_state(construct: Callable[[], nn.Module], max_registrations: int) -> tuple[dict[str, tuple[int, ...]], int]:
    """Build ``construct()`` on the meta device, where tensors get shapes but no memory.

    Returns the names and shapes of the network's state dict, and how many
    elements its other buffers (tables it computes itself) would hold. A
    ``TooManyRegistrations`` stops construction once it has registered more than
    ``max_registrations`` modules, parameters and buffers: even without
    memory for tensors, millions of layers would exhaust memory.
    """
    with torch.device("meta"), _registration_limit(max_registrations):
        net = construct()
    state = net.state_dict()
    derived = sum(b.numel() for name, b in net.named_buffers() if name not in state)
    return {name: tuple(t.shape) for name, t in state.items()}, derived


@contextlib.contextmanager
def _registration_limit(limit: int) -> Iterator[None]:
    thread, count = threading.get_ident(), 0

    def counted(*_: Any) -> None:
        nonlocal count
        if threading.get_ident() != thread:  # the hooks are global; other threads build their own networks
            return
        count += 1
        if count > limit:
            raise TooManyRegistrations(f"the architecture registers more than {limit:,} modules, parameters and buffers")

    handles = [
        module_hooks.register_module_module_registration_hook(counted),
        module_hooks.register_module_parameter_registration_hook(counted),
        module_hooks.register_module_buffer_registration_hook(counted),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
