"""Plain torch modules (no Spark), each registered by name in ``sparkneural.nn.registry``."""

from sparkneural.nn import autoencoder, cnn, mlp, recurrent, seq2seq, tcn, transformer, wavenet  # noqa: F401  (register their architectures)
from sparkneural.nn.registry import build, get, names, register

__all__ = ["build", "get", "names", "register"]
