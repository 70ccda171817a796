"""Plain torch modules (no Spark), each registered by name in ``sparkdl.nn.registry``."""

from sparkdl.nn import autoencoder, cnn, mlp, recurrent, seq2seq, tcn, transformer, wavenet  # noqa: F401  (register their architectures)
from sparkdl.nn.registry import build, get, names, register

__all__ = ["build", "get", "names", "register"]
