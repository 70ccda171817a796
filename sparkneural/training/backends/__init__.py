"""Where the training function runs: on the driver, or on N ranks on the executors.

Every backend runs ``sparkneural.training.loop.train`` and returns rank 0's
``TrainResult``, which carries the weight digests of every rank.
``"auto"`` is Horovod when ``horovod.torch`` imports, else DistributedDataParallel
(``torch_distributor``). Both start their ranks as the tasks of one barrier
stage (``barrier.launch``), on a classic session and a Spark Connect client alike.
"""

from __future__ import annotations

from typing import Any

from sparkneural.training.backends.horovod import HorovodBackend
from sparkneural.training.backends.local import LocalBackend
from sparkneural.training.backends.torch_distributor import TorchDistributorBackend

BACKENDS = {"auto": None, "horovod": HorovodBackend, "torch_distributor": TorchDistributorBackend, "local": LocalBackend}
HOROVOD_SETUP = "pip install 'sparkneural[horovod]' && sparkneural build-horovod (builds horovod 0.28.1 for this torch)"


def horovod_error() -> str | None:
    """Why ``horovod.torch`` cannot be used here, or None when it imports."""
    try:
        import horovod.torch  # noqa: F401
    except Exception as err:  # an ImportError, or a build that does not load with this torch
        return f"{type(err).__name__}: {err}"
    return None


def resolve(name: str, verbose: int = 0) -> str:
    """The backend ``name`` stands for: ``auto`` becomes horovod or torch_distributor."""
    if name != "auto":
        return name
    chosen = "horovod" if horovod_error() is None else "torch_distributor"
    if verbose:
        why = "horovod.torch imports" if chosen == "horovod" else "horovod.torch does not import"
        print(f"sparkneural: backend auto -> {chosen} ({why})", flush=True)
    return chosen


def get_backend(name: str, numProc: int = 1, verbose: int = 1, spark: Any = None, profile: Any = None):
    """The backend called ``name`` running ``numProc`` ranks (``local`` always runs one) as the tasks of a
    barrier stage of ``spark``'s, with the resource ``profile`` where one is given."""
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, found {name!r}")
    chosen = BACKENDS[resolve(name, verbose)]
    if chosen is LocalBackend:
        return LocalBackend()
    return chosen(numProc=numProc, verbose=verbose, spark=spark, profile=profile)


__all__ = ["BACKENDS", "get_backend", "resolve", "HorovodBackend", "LocalBackend", "TorchDistributorBackend"]
