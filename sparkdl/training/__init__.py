"""The training loop and the backends that run it on one or more ranks."""

from sparkdl.training.loop import TrainResult, train
from sparkdl.training.spec import TrainSpec

__all__ = ["TrainResult", "TrainSpec", "train"]
