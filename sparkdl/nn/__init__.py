"""Plain torch modules (no Spark), each registered by name in ``sparkdl.nn.registry``."""

from sparkdl.nn import mlp  # noqa: F401  (registers "mlp")
from sparkdl.nn.registry import build, get, names, register

__all__ = ["build", "get", "names", "register"]
