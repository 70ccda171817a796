"""Transformer encoder for classifying or regressing whole sequences.

Input, one example without the batch dimension:

- ``vocabSize == 0``: ``[timesteps, features]`` floats, projected to dModel
  by a linear layer; every step is real (no padding).
- ``vocabSize > 0``: ``[timesteps]`` token ids, given as float values of
  integers; id ``padId`` marks padding. An example may be shorter than
  ``timesteps`` (the model also accepts a shorter tensor). Token embeddings are
  scaled by sqrt(dModel) as in Vaswani et al. (2017).

Multi-head scaled dot-product self-attention, h heads of d_k = dModel / h:

    head_i = softmax(Q_i K_i^T / sqrt(d_k) + M) V_i,   Q_i = X W_i^Q, K_i = X W_i^K, V_i = X W_i^V
    MultiHead(X) = [head_1; ...; head_h] W^O

where M is 0 for real keys and -inf for padded keys, so padding gets zero
weight. Each layer (post-norm, as in the paper):

    X = LayerNorm(X + Dropout(MultiHead(X)))
    X = LayerNorm(X + Dropout(W_2 relu(W_1 X + b_1) + b_2))

Position encodings, added to the embeddings: "sinusoidal"
PE(p, 2i) = sin(p / 10000^(2i/dModel)), PE(p, 2i+1) = cos(p / 10000^(2i/dModel));
"learned" (one trained vector per position); or "none" (the encoder is then
permutation-equivariant and mean pooling permutation-invariant).

Pooling to one vector per sequence: "mean" over real tokens, "cls" (a learned
vector prepended at position 0, its final state), or "last" (the last real
token). A linear head then gives (batch, outputSize).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparkneural.nn.registry import register

POOLINGS = ("mean", "cls", "last")
POSITIONALS = ("sinusoidal", "learned", "none")


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """The (length, dim) table PE(p, 2i) = sin(p / 10000^(2i/dim)), PE(p, 2i+1) = cos(...)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with a key padding mask.

    ``padding`` is a (batch, T) bool tensor, True where the key is padding
    (the convention of ``torch.nn.MultiheadAttention``'s key_padding_mask).
    Returns the output (batch, T, dModel) and the weights (batch, h, T, T).

    >>> attention = MultiHeadSelfAttention(dModel=8, numHeads=2)
    >>> out, weights = attention(torch.zeros(3, 5, 8))
    >>> out.shape, weights.shape
    (torch.Size([3, 5, 8]), torch.Size([3, 2, 5, 5]))
    """

    def __init__(self, dModel: int, numHeads: int, dropout: float = 0.0):
        super().__init__()
        self.numHeads, self.headSize = numHeads, dModel // numHeads
        self.query = nn.Linear(dModel, dModel)
        self.key = nn.Linear(dModel, dModel)
        self.value = nn.Linear(dModel, dModel)
        self.output = nn.Linear(dModel, dModel)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        return x.view(batch, steps, self.numHeads, self.headSize).transpose(1, 2)  # (B, h, T, d_k)

    def forward(
        self, x: torch.Tensor, padding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.headSize)  # (B, h, T, T)
        if padding is not None:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        heads = self.dropout(weights) @ v  # (B, h, T, d_k)
        concatenated = heads.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.output(concatenated), weights


class EncoderLayer(nn.Module):
    """Self-attention and a feed-forward block, each with a residual connection and layer norm."""

    def __init__(self, dModel: int, numHeads: int, feedForward: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadSelfAttention(dModel, numHeads, dropout)
        self.norm1 = nn.LayerNorm(dModel)
        self.feedForward = nn.Sequential(
            nn.Linear(dModel, feedForward), nn.ReLU(), nn.Dropout(dropout), nn.Linear(feedForward, dModel)
        )
        self.norm2 = nn.LayerNorm(dModel)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        attended, _ = self.attention(x, padding)
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.feedForward(x)))


def _positive_int(name: str, value: object, allow_zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name}: expected {kind} integer, found {value!r}")
    return value


@register("transformer")
class TransformerEncoder(nn.Module):
    """A Transformer encoder over token ids or float feature sequences, pooled to one output.

    >>> ids = TransformerEncoder(inputShape=[12], outputSize=2, vocabSize=20, dModel=16, numHeads=2)
    >>> ids(torch.tensor([[5.0, 7.0, 9.0] + [0.0] * 9])).shape
    torch.Size([1, 2])
    >>> floats = TransformerEncoder(inputShape=[30, 3], outputSize=1, dModel=16, pooling="last")
    >>> floats(torch.randn(4, 30, 3)).shape
    torch.Size([4, 1])
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        dModel: int = 64,
        numHeads: int = 4,
        numLayers: int = 2,
        feedForward: int = 128,
        dropout: float = 0.1,
        vocabSize: int = 0,
        padId: int = 0,
        pooling: str = "mean",
        positional: str = "sinusoidal",
    ):
        super().__init__()
        shape = [int(d) for d in inputShape]
        vocabSize = _positive_int("vocabSize", vocabSize, allow_zero=True)
        expected = 1 if vocabSize > 0 else 2
        if len(shape) != expected or any(d <= 0 for d in shape):
            layout = "[timesteps] (token ids)" if vocabSize > 0 else "[timesteps, features]"
            raise ValueError(f"inputShape: expected {layout} of positive integers, found {list(inputShape)}")
        for name, value in (("dModel", dModel), ("numHeads", numHeads), ("numLayers", numLayers),
                            ("feedForward", feedForward), ("outputSize", outputSize)):
            _positive_int(name, value)
        if dModel % numHeads:
            raise ValueError(f"dModel: expected a multiple of numHeads={numHeads}, found {dModel}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), found {dropout}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {list(POOLINGS)}, found {pooling!r}")
        if positional not in POSITIONALS:
            raise ValueError(f"positional: expected one of {list(POSITIONALS)}, found {positional!r}")
        if vocabSize > 0 and not 0 <= padId < vocabSize:
            raise ValueError(f"padId: expected an id in [0, vocabSize={vocabSize}), found {padId!r}")
        self.dModel, self.vocabSize, self.padId = dModel, vocabSize, int(padId)
        self.pooling, self.positional = pooling, positional
        if vocabSize > 0:
            self.embedding: nn.Module = nn.Embedding(vocabSize, dModel, padding_idx=self.padId)
            # std 1/sqrt(dModel), so that after the sqrt(dModel) scaling tokens and positions weigh alike
            nn.init.normal_(self.embedding.weight, std=dModel**-0.5)
            with torch.no_grad():
                self.embedding.weight[self.padId].zero_()
        else:
            self.embedding = nn.Linear(shape[1], dModel)
        positions = shape[0] + (1 if pooling == "cls" else 0)
        if pooling == "cls":
            self.cls = nn.Parameter(torch.randn(dModel) * 0.02)
        if positional == "sinusoidal":
            self.register_buffer("positionTable", sinusoidal_encoding(positions, dModel), persistent=False)
        elif positional == "learned":
            self.positionTable = nn.Parameter(torch.randn(positions, dModel) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(dModel, numHeads, feedForward, dropout) for _ in range(numLayers))
        self.head = nn.Linear(dModel, int(outputSize))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings with positions (batch, T', dModel) and the padding mask (batch, T'), True = padding."""
        if self.vocabSize > 0:
            ids = x.round().long()
            padding = ids == self.padId
            h = self.embedding(ids) * math.sqrt(self.dModel)
        else:
            padding = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            h = self.embedding(x)
        if self.pooling == "cls":
            h = torch.cat([self.cls.expand(h.shape[0], 1, -1), h], dim=1)
            padding = F.pad(padding, (1, 0), value=False)
        # a sequence of padding only would give softmax over nothing (NaN); let it attend to all
        padding = padding & ~padding.all(dim=1, keepdim=True)
        if self.positional != "none":
            h = h + self.positionTable[: h.shape[1]]
        return self.dropout(h), padding

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final states (batch, T', dModel) and the padding mask; T' = T + 1 with "cls" pooling."""
        h, padding = self.embed(x)
        for layer in self.layers:
            h = layer(h, padding)
        return h, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, padding = self.encode(x)
        real = (~padding).to(h.dtype)
        if self.pooling == "cls":
            pooled = h[:, 0]
        elif self.pooling == "mean":
            pooled = (h * real[..., None]).sum(dim=1) / real.sum(dim=1, keepdim=True).clamp(min=1.0)
        else:  # the highest real position, wherever the padding sits
            steps = torch.arange(h.shape[1], device=h.device)
            last = (real * steps).argmax(dim=1)
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        return self.head(pooled)
