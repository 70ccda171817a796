"""Spark conf keys and environment variables under the library's former name, for one more release.

The library was called ``sparkdl`` before its first release. ``spark.sparkdl.*``
conf keys and ``SPARKDL_*`` environment variables still work in this release
when the new spelling (``spark.sparkneural.*``, ``SPARKNEURAL_*``) is unset,
with a ``FutureWarning`` that names the new spelling; the next release drops them.

>>> import os
>>> os.environ["SPARKDL_PIPELINES"] = "/srv/jobs"
>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     environ_value("SPARKNEURAL_PIPELINES")
'/srv/jobs'
>>> print(caught[0].message)
SPARKDL_PIPELINES is deprecated and will be removed in the next release: set SPARKNEURAL_PIPELINES instead
>>> del os.environ["SPARKDL_PIPELINES"]
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

CONF_PREFIX, FORMER_CONF_PREFIX = "spark.sparkneural.", "spark.sparkdl."
ENV_PREFIX, FORMER_ENV_PREFIX = "SPARKNEURAL_", "SPARKDL_"


def _value(get, name: str, prefix: str, former_prefix: str) -> str | None:
    value = get(name)
    if value is None and name.startswith(prefix):
        former = former_prefix + name[len(prefix):]
        value = get(former)
        if value is not None:
            warnings.warn(f"{former} is deprecated and will be removed in the next release: set {name} instead",
                          FutureWarning, stacklevel=3)
    return value


def conf_value(conf: Any, key: str) -> str | None:
    """``key`` of a ``spark.conf``; for an unset ``spark.sparkneural.*`` key, its ``spark.sparkdl.*`` value, with a warning."""
    return _value(lambda k: conf.get(k, None), key, CONF_PREFIX, FORMER_CONF_PREFIX)


def environ_value(name: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """``name`` of ``environ``; for an unset ``SPARKNEURAL_*`` name, its ``SPARKDL_*`` value, with a warning."""
    return _value(environ.get, name, ENV_PREFIX, FORMER_ENV_PREFIX)
