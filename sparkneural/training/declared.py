"""A Param declared once: name, doc, converter, default and constraint.

From one ``Declared`` come the pyspark ``Param`` and its default
(``sparkneural.estimators.params``), its check (a constraint beside it, checked
generically, as scikit-learn's ``_parameter_constraints``), its
``setX``/``getX`` and, for training Params, the field of the ``TrainSpec``
that travels to the ranks (``sparkneural.training.spec``). Nothing here imports
pyspark until a Param is made or a value converted, so the training loop
reads these declarations without Spark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable



# -- constraints: each raises ValueError("<name>: expected ..., found ...") -------------
@dataclass(frozen=True)
class Interval:
    """A finite number in an interval; ``closed`` says which ends belong to it."""

    low: float | None
    high: float | None = None
    closed: str = "left"  # "left", "right", "both" or "neither"
    optional: bool = False  # None is allowed too

    def describe(self, finite: bool = False) -> str:
        """E.g. "a value > 0", "a value in [0, 1) or None"; "a finite value ..." when ``finite``."""
        left, right = self.closed in ("left", "both"), self.closed in ("right", "both")
        what = "a finite value" if finite else "a value"
        if self.high is None:
            text = f"{what} {'>=' if left else '>'} {self.low:g}"
        elif self.low is None:
            text = f"{what} {'<=' if right else '<'} {self.high:g}"
        else:
            text = f"{what} in {'[' if left else '('}{self.low:g}, {self.high:g}{']' if right else ')'}"
        return text + (" or None" if self.optional else "")

    def __call__(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        left, right = self.closed in ("left", "both"), self.closed in ("right", "both")
        ok = value is not None and not isinstance(value, bool) and math.isfinite(value)  # also refuses NaN
        if ok and self.low is not None:
            ok = value >= self.low if left else value > self.low
        if ok and self.high is not None:
            ok = value <= self.high if right else value < self.high
        if not ok:
            infinite = isinstance(value, float) and math.isinf(value)
            raise ValueError(f"{name}: expected {self.describe(finite=infinite)}, found {value!r}")


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values, or of a registry's names (``source`` called at check time)."""

    values: tuple = ()
    source: Callable[[], Iterable] | None = None
    optional: bool = False

    def allowed(self) -> list:
        return list(self.source() if self.source else self.values)

    def describe(self) -> str:
        """The values allowed, as the error message words them, e.g. "one of ['adam', 'sgd']"."""
        return f"one of {self.allowed()}" + (" or None" if self.optional else "")

    def __call__(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        allowed = self.allowed()
        if value not in allowed:
            raise ValueError(f"{name}: expected one of {allowed}, found {value!r}")


@dataclass(frozen=True)
class Declared:
    """One Param: the single place its name, doc, converter, default and constraint are written."""

    name: str
    doc: str
    converter: Callable[[Any], Any]
    default: Any
    check: Callable[[str, Any], None] | None = None
    trains: bool = False  # a field of the TrainSpec every rank receives

    def param(self):
        from pyspark.ml.param import Param, Params

        return Param(Params._dummy(), self.name, self.doc, typeConverter=self.converter)


# -- converters -----------------------------------------------------------------------
def optional(converter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        return None if value is None else converter(value)

    convert.__name__ = f"optional_{getattr(converter, '__name__', 'value')}"
    return convert


def _pyspark(name: str) -> Callable[[Any], Any]:
    """pyspark's ``TypeConverters.<name>``, imported when first called."""

    def convert(value: Any) -> Any:
        from pyspark.ml.param import TypeConverters

        return getattr(TypeConverters, name)(value)

    convert.__name__ = name
    return convert


to_float = _pyspark("toFloat")
to_string = _pyspark("toString")
to_bool = _pyspark("toBoolean")
to_int_list = _pyspark("toListInt")
to_float_list = _pyspark("toListFloat")


def to_int(value: Any) -> int:
    """An integer; a bool is accepted as 0/1 (flag-like levels such as ``verbose``)."""
    return int(value) if isinstance(value, bool) else _pyspark("toInt")(value)


def to_dict(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict, found {type(value).__name__}")
    return dict(value)


def to_string_list(value: Any) -> list[str]:
    return [] if value is None else _pyspark("toListString")(value)


def to_paths(value: Any) -> str | list[str] | None:
    """None, one path, or a list of paths."""
    if value is None or isinstance(value, str):
        return value
    return _pyspark("toListString")(value)
