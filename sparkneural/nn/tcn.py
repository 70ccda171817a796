"""Temporal convolutional network (Bai, Kolter & Koltun 2018): residual blocks of dilated causal convolutions.

Input (batch, channels, length), inputShape ``[channels, length]`` (a flat
(batch, channels * length) row is reshaped to it, channel-major; windows from
``SequenceWindower`` are time-major, which is the same layout only for one
channel, so multi-column windows need transposing first). Block i of
L blocks has C_i = channels[i] output channels and dilation d_i = 2^i; with
h_0 the input and CausalConv_{k,d} the convolution of ``sparkneural.nn.wavenet``
(width k, dilation d, output at t reads inputs <= t):

    z       = Dropout(ReLU(CausalConv_{k,d_i}(h_i)))          C_{i-1} -> C_i
    z       = Dropout(ReLU(CausalConv_{k,d_i}(z)))            C_i     -> C_i
    h_{i+1} = ReLU(z + R_i h_i)        R_i: 1x1 convolution if C_{i-1} != C_i, else identity
    y       = W h_L[:, :, T-1] + b     (batch, outputSize): regression values or class logits

Receptive field (input steps the last output reads): each causal convolution
of width k and dilation d widens it by (k - 1) d, and each block has two:

    RF = 1 + 2 (k - 1) sum_i d_i = 1 + 2 (k - 1) (2^L - 1)
    k = 3, L = 4 (the defaults): RF = 1 + 2 * 2 * 15 = 61.

Differences from the paper: no weight normalisation on the convolutions, and
the residual path is the identity whenever the channel count is unchanged.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Sequence

import torch
import torch.nn as nn

from sparkneural.nn.registry import register
from sparkneural.nn.wavenet import CausalConv1d


def _positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, found {value!r}")
    return value


def _positive_ints(name: str, values: Sequence[int]) -> list[int]:
    found = list(values) if isinstance(values, (list, tuple)) else []
    if not found or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in found):
        raise ValueError(f"{name}: expected a non-empty list of positive integers, found {values!r}")
    return found


def _check_dropout(value: float) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), found {value!r}")
    return float(value)


def _check_input_shape(inputShape: Sequence[int]) -> list[int]:
    shape = list(inputShape) if isinstance(inputShape, (list, tuple)) else []
    if len(shape) != 2 or any(not isinstance(d, Integral) or isinstance(d, bool) or d <= 0 for d in shape):
        raise ValueError(f"inputShape: expected [channels, length] (2 positive integers), found {inputShape!r}")
    return [int(d) for d in shape]


class TemporalBlock(nn.Module):
    """Two dilated causal convolutions (ReLU, dropout after each) plus a residual path, then ReLU.

    >>> block = TemporalBlock(2, 8, kernel=3, dilation=4, dropout=0.0)
    >>> block(torch.zeros(5, 2, 30)).shape
    torch.Size([5, 8, 30])
    """

    def __init__(self, width_in: int, width: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(width_in, width, kernel, dilation)
        self.conv2 = CausalConv1d(width, width, kernel, dilation)
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Conv1d(width_in, width, 1) if width_in != width else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.dropout(torch.relu(self.conv1(x)))
        z = self.dropout(torch.relu(self.conv2(z)))
        return torch.relu(z + self.residual(x))


@register("tcn")
class TCN(nn.Module):
    """A temporal convolutional network over ``[channels, length]`` sequences, read at the last step.

    One residual block per entry of ``channels`` (its output width); block i
    has dilation 2^i. The head is a dense layer on the last time step's
    features, so the output is (batch, outputSize). A step t of
    ``feature_map`` depends on inputs t - receptive_field + 1 ... t only.

    >>> net = TCN(inputShape=[2, 50], outputSize=3, channels=[8, 8], kernelSize=2)
    >>> net(torch.zeros(4, 2, 50)).shape
    torch.Size([4, 3])
    >>> net.receptive_field  # 1 + 2 * (2 - 1) * (1 + 2)
    7
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        channels: Sequence[int] = (32, 32, 32, 32),
        kernelSize: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.inputShape = _check_input_shape(inputShape)
        outputSize = _positive_int("outputSize", outputSize)
        widths = _positive_ints("channels", channels)
        kernel = _positive_int("kernelSize", kernelSize)
        dropout = _check_dropout(dropout)

        blocks = []
        width_in = self.inputShape[0]
        for i, width in enumerate(widths):
            blocks.append(TemporalBlock(width_in, width, kernel, 2**i, dropout))
            width_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width_in, outputSize)

    @property
    def receptive_field(self) -> int:
        """Input steps one output step reads, summed over the actual convolutions: 1 + sum (k - 1) d."""
        return 1 + sum(conv.left_padding for block in self.blocks for conv in (block.conv1, block.conv2))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output (batch, channels[-1], length), one feature vector per time step."""
        if x.dim() == 2:
            x = x.reshape(x.shape[0], *self.inputShape)
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x)[:, :, -1])
