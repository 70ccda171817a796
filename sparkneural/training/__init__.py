"""The training loop and the backends that run it on one or more ranks.

``train`` and ``TrainResult`` are imported on first use: they bring in
torch, and the Spark tasks that only launch or collect a training run (the
backends' launchers, the processes that carry a rank's result back) should
not pay for importing it.
"""

from sparkneural.training.spec import TrainSpec

__all__ = ["TrainResult", "TrainSpec", "train"]


def __getattr__(name: str):
    if name in ("TrainResult", "train"):
        from sparkneural.training import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'sparkneural.training' has no attribute {name!r}")
