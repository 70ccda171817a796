"""Where the training function runs: on the driver, or on N ranks on the executors.

Every backend runs ``sparkdl.training.loop.train`` and returns rank 0's
``TrainResult``, which carries the weight digests of every rank.
"""

from __future__ import annotations

from sparkdl.training.backends.horovod import HorovodBackend
from sparkdl.training.backends.local import LocalBackend
from sparkdl.training.backends.torch_distributor import TorchDistributorBackend

BACKENDS = {"horovod": HorovodBackend, "torch_distributor": TorchDistributorBackend, "local": LocalBackend}


def get_backend(name: str, numProc: int = 1, verbose: int = 1):
    """The backend called ``name`` running ``numProc`` ranks (``local`` always runs one)."""
    try:
        backend = BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend: expected one of {sorted(BACKENDS)}, found {name!r}") from None
    return backend(numProc=numProc, verbose=verbose)


__all__ = ["get_backend", "HorovodBackend", "LocalBackend", "TorchDistributorBackend"]
