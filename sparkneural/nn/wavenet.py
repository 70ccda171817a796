"""WaveNet over mu-law classes: dilated causal convolutions, gated units, fast generation.

Input: a window of T mu-law classes c_0..c_{T-1} (integers 0..Q-1, Q = mu + 1,
usually 256), one-hot encoded to Q channels. Output: logits (batch, T, Q);
the logits at step t predict c_{t+1} (teacher forcing: the training target is
the window shifted by one step).

Causal convolution of width k and dilation d (weights W laid out as in
``nn.Conv1d``, shape (out, in, k); the last tap is the current sample):

    y_t = b + sum_{j=0}^{k-1} W[:, :, j] x_{t - (k-1-j) d}       (x_s = 0 for s < 0)

Network, one layer per dilation d = 2^i, i = 0..layersPerBlock-1, the block
repeated ``blocks`` times (h is the layer input, g the global condition):

    h_0    = CausalConv_k(one_hot(c))                        Q -> residualChannels
    z      = tanh(W_f *_d h + V_f g) ⊙ sigmoid(W_g *_d h + V_g g)
    h_next = h + R z,   skip += S z                          (R, S: 1x1 convolutions)
    logits = O_2 relu(O_1 relu(sum of skips))                (O_1, O_2: 1x1 convolutions)

Receptive field (input steps the last output reads), from the actual layers:

    RF = 1 + (k - 1) + (k - 1) * sum(dilations)
       = 1 + (k - 1) * (1 + blocks * (2^layersPerBlock - 1))
    k = 2, one block of 1..512: RF = 1 + 1 + 1023 = 1025 (the paper's 1024 plus
    the initial causal convolution).

Global conditioning (numConditions > 0): the category id is embedded to a
vector g (``conditionChannels`` wide) and each layer adds its own 1x1
projections V_f g and V_g g to the filter and gate pre-activations.

Generation is autoregressive. Naive: recompute the network on the last RF
classes for each new sample, O(RF) work per sample. Fast: each dilated
convolution keeps a ring buffer of its last (k-1) d inputs, so a new sample
costs one step per layer, O(layers) work per sample. Decoding of the logits l:
"sample" p = softmax(l); "temperature" p = softmax(l / T); "top_k" p restricted
to the K largest logits; "greedy" argmax l; "mean" the class nearest to
sum_c c p_c.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparkneural.nn.registry import register

MODES = ("sample", "greedy", "temperature", "top_k", "mean")


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` padded with (kernel_size - 1) * dilation zeros on the left only.

    Output length = input length; the output at t reads x[t - (k-1-j) * dilation]
    through tap j, so the last tap multiplies the current sample.

    >>> conv = CausalConv1d(1, 4, kernel_size=2, dilation=8)
    >>> conv(torch.zeros(3, 1, 100)).shape
    torch.Size([3, 4, 100])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.left_padding = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_padding, 0)))


class GatedResidualLayer(nn.Module):
    """One WaveNet layer: gated dilated convolution, then residual and skip 1x1 convolutions."""

    def __init__(self, residual: int, dilation_channels: int, skip: int, kernel: int, dilation: int, condition: int):
        super().__init__()
        self.filter_conv = CausalConv1d(residual, dilation_channels, kernel, dilation)
        self.gate_conv = CausalConv1d(residual, dilation_channels, kernel, dilation)
        self.condition = nn.Linear(condition, 2 * dilation_channels, bias=False) if condition else None
        self.residual_conv = nn.Conv1d(dilation_channels, residual, 1)
        self.skip_conv = nn.Conv1d(dilation_channels, skip, 1)

    def forward(self, h: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        f, s = self.filter_conv(h), self.gate_conv(h)
        if self.condition is not None:
            vf, vg = self.condition(g).unsqueeze(-1).chunk(2, dim=1)
            f, s = f + vf, s + vg
        z = torch.tanh(f) * torch.sigmoid(s)
        return h + self.residual_conv(z), self.skip_conv(z)


def _positive_int(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    return value


@register("wavenet")
class WaveNet(nn.Module):
    """WaveNet over windows of mu-law classes (see the module docstring for the equations).

    Input layout, one row per example, float values holding integers:
    ``[c_0, ..., c_{T-1}]`` (inputShape ``[T]`` or ``[T, 1]``), and with
    ``numConditions > 0`` one more trailing value, the condition id:
    ``[c_0, ..., c_{T-1}, id]`` (inputShape ``[T + 1]`` or ``[T + 1, 1]``).
    Output: logits (batch, T, outputSize); step t predicts c_{t+1}.

    >>> net = WaveNet(inputShape=[64], outputSize=256, layersPerBlock=4, blocks=2)
    >>> net(torch.randint(0, 256, (3, 64)).float()).shape
    torch.Size([3, 64, 256])
    >>> net.receptive_field  # 1 + 1 + 2 * (1 + 2 + 4 + 8)
    32
    >>> net.generate(100, mode="top_k", topK=8, seed=1).shape
    (100,)
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        layersPerBlock: int = 10,
        blocks: int = 3,
        kernelSize: int = 2,
        residualChannels: int = 32,
        dilationChannels: int = 32,
        skipChannels: int = 64,
        numConditions: int = 0,
        conditionChannels: int = 16,
    ):
        super().__init__()
        self.numConditions = _positive_int("numConditions", numConditions, 0)
        shape = [int(d) for d in inputShape]
        if (
            len(shape) not in (1, 2)
            or (len(shape) == 2 and shape[1] != 1)
            or shape[0] < (2 if self.numConditions else 1)
        ):
            extra = " plus 1 trailing condition id" if self.numConditions else ""
            raise ValueError(f"inputShape: expected [timesteps{extra}] or [timesteps{extra}, 1], found {shape}")
        self.timesteps = shape[0] - (1 if self.numConditions else 0)
        self.classes = _positive_int("outputSize", outputSize, 2)
        kernel = _positive_int("kernelSize", kernelSize, 2)
        layers, blocks = _positive_int("layersPerBlock", layersPerBlock), _positive_int("blocks", blocks)
        residual = _positive_int("residualChannels", residualChannels)
        gated = _positive_int("dilationChannels", dilationChannels)
        skip = _positive_int("skipChannels", skipChannels)
        condition = _positive_int("conditionChannels", conditionChannels) if self.numConditions else 0

        self.embedding = nn.Embedding(self.numConditions, condition) if self.numConditions else None
        self.causal = CausalConv1d(self.classes, residual, kernel)
        self.layers = nn.ModuleList(
            GatedResidualLayer(residual, gated, skip, kernel, 2**i, condition)
            for _ in range(blocks)
            for i in range(layers)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(), nn.Conv1d(skip, self.classes, 1))

    @property
    def receptive_field(self) -> int:
        """Input steps the last output reads, summed over the actual layers.

        RF = 1 + (k - 1) + sum over gated layers of (k - 1) * d
           = 1 + (k - 1) * (1 + blocks * (2^layersPerBlock - 1))
        """
        return 1 + self.causal.left_padding + sum(layer.filter_conv.left_padding for layer in self.layers)

    def split_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(classes (batch, T) long, condition ids (batch,) long or None) from a float input row."""
        x = x.reshape(x.shape[0], -1).long()
        if self.numConditions:
            return x[:, :-1], x[:, -1]
        return x, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        classes, condition = self.split_input(x)
        one_hot = F.one_hot(classes, self.classes).transpose(1, 2).to(self.causal.weight.dtype)
        return self.forward_one_hot(one_hot, condition)

    def forward_one_hot(self, one_hot: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, T, classes) from one-hot (or any real) inputs (batch, classes, T)."""
        g = self.embedding(condition) if self.embedding is not None else None
        h = self.causal(one_hot)
        skips = 0
        for layer in self.layers:
            h, s = layer(h, g)
            skips = skips + s
        return self.head(skips).transpose(1, 2)

    @torch.inference_mode()
    def generate(
        self,
        numSamples: int,
        prime: Sequence[int] | np.ndarray | None = None,
        mode: str = "sample",
        temperature: float = 1.0,
        topK: int | None = None,
        seed: int = 0,
        condition: int | None = None,
        fast: bool = True,
    ) -> np.ndarray:
        """``numSamples`` new classes (int64), continuing ``prime`` (default: one class mu // 2, silence).

        One uniform number per sample is drawn from a ``torch.Generator`` seeded
        with ``seed``, so ``fast=True`` (ring buffers, one step per layer) and
        ``fast=False`` (the network on the last receptive_field classes) give
        the same sequence up to float rounding; in float64 (``net.double()``)
        they agree exactly in practice. Decode the classes with mu-law.
        """
        _positive_int("numSamples", numSamples, 0)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {list(MODES)}, found {mode!r}")
        if mode == "temperature" and not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, found {temperature!r}")
        if mode == "top_k":
            if not isinstance(topK, int) or not 1 <= topK <= self.classes:
                raise ValueError(f"topK: expected an integer in [1, {self.classes}] for mode 'top_k', found {topK!r}")
        history = [(self.classes - 1) // 2] if prime is None else [int(c) for c in np.asarray(prime).reshape(-1)]
        if not history or min(history) < 0 or max(history) >= self.classes:
            raise ValueError(f"prime: expected a non-empty sequence of classes in [0, {self.classes - 1}], found {prime!r}")
        if self.numConditions:
            if not isinstance(condition, (int, np.integer)) or not 0 <= condition < self.numConditions:
                raise ValueError(f"condition: expected an id in [0, {self.numConditions - 1}], found {condition!r}")
        elif condition is not None:
            raise ValueError(f"condition: expected None (numConditions is 0), found {condition!r}")

        device = self.causal.weight.device
        cond = torch.tensor([int(condition)], device=device) if self.numConditions else None
        generator = torch.Generator().manual_seed(int(seed))
        if fast:
            stepper = _FastGenerator(self, cond)
            for c in history:
                logits = stepper.step(c)
        start = len(history)
        for n in range(numSamples):
            if not fast:
                window = torch.tensor([history[-self.receptive_field :]], device=device)
                one_hot = F.one_hot(window, self.classes).transpose(1, 2).to(self.causal.weight.dtype)
                logits = self.forward_one_hot(one_hot, cond)[0, -1].cpu().numpy()
            u = torch.rand((), generator=generator, dtype=torch.float64).item()
            history.append(choose_class(logits, u, mode, temperature, topK))
            if fast and n + 1 < numSamples:
                logits = stepper.step(history[-1])
        return np.asarray(history[start:], dtype=np.int64)


def choose_class(logits: np.ndarray, u: float, mode: str, temperature: float = 1.0, topK: int | None = None) -> int:
    """One class from a vector of logits; ``u`` in [0, 1) picks by inverse CDF in the sampling modes."""
    logits = np.asarray(logits, dtype=np.float64)
    if mode == "greedy":
        return int(np.argmax(logits))
    if mode == "temperature":
        logits = logits / temperature
    elif mode == "top_k":
        kth = np.partition(logits, -topK)[-topK]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if mode == "mean":
        return int(np.clip(np.round(probs @ np.arange(len(probs))), 0, len(probs) - 1))
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), len(probs) - 1))


class _FastGenerator:
    """Per-layer queues of past inputs, so one new class costs one step per layer.

    Each queue is a ring buffer of the last (k - 1) d inputs of a layer, written
    twice (rows p and p + L, L = (k - 1) d + 1) so that the k taps
    x_{t-(k-1)d}, ..., x_{t-d}, x_t are always the plain slice [p0 : p0 + L : d].
    Zero rows stand for the zero padding of the naive forward pass.

    The steps run in numpy on the CPU: one sample at a time is all per-call
    overhead, and numpy's is about a third of torch's for vectors this small.
    """

    def __init__(self, net: WaveNet, condition: torch.Tensor | None):
        def array(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy())

        weight = net.causal.weight  # (residual, classes, k)
        self.kernel = weight.shape[2]
        self.first_taps = array(weight.permute(2, 1, 0))  # [tap, class] -> (residual,)
        self.first_bias = array(net.causal.bias)
        self.past_classes: list[int] = []
        g = net.embedding(condition)[0] if condition is not None else None
        self.layers = []
        for layer in net.layers:
            f, s = layer.filter_conv, layer.gate_conv
            # (out, in, k) -> (out, k * in), matching the flattened (k, in) slice of taps
            gated = torch.cat([f.weight, s.weight]).permute(0, 2, 1).reshape(2 * f.out_channels, -1)
            bias = torch.cat([f.bias, s.bias])
            if g is not None:
                bias = bias + layer.condition(g)
            out = torch.cat([layer.residual_conv.weight[:, :, 0], layer.skip_conv.weight[:, :, 0]])
            out_bias = torch.cat([layer.residual_conv.bias, layer.skip_conv.bias])
            length = f.left_padding + 1
            queue = np.zeros((2 * length, f.in_channels), dtype=self.first_bias.dtype)
            self.layers.append(
                (array(gated), array(bias), array(out), array(out_bias), f.dilation[0], length, queue, f.in_channels)
            )
        self.head = [(array(m.weight[:, :, 0]), array(m.bias)) for m in net.head if isinstance(m, nn.Conv1d)]
        self.time = 0

    def step(self, c: int) -> np.ndarray:
        """Consume class ``c`` at the current time; return the logits predicting the next class."""
        t, k = self.time, self.kernel
        h = self.first_bias + self.first_taps[k - 1, c]
        for j, past in enumerate(reversed(self.past_classes)):  # most recent first
            h = h + self.first_taps[k - 2 - j, past]
        self.past_classes = (self.past_classes + [c])[-(k - 1) :]
        skips = 0.0
        for gated, bias, out, out_bias, d, length, queue, residual in self.layers:
            p = t % length
            queue[p] = queue[p + length] = h
            start = (t + 1) % length  # the row of time t - (k - 1) d
            pre = gated @ queue[start : start + length : d].reshape(-1) + bias
            half = len(pre) // 2
            z = np.tanh(pre[:half]) * (0.5 + 0.5 * np.tanh(0.5 * pre[half:]))  # sigmoid, without overflow
            rs = out @ z + out_bias
            h = h + rs[:residual]
            skips = skips + rs[residual:]
        self.time = t + 1
        (w1, b1), (w2, b2) = self.head
        return w2 @ np.maximum(w1 @ np.maximum(skips, 0.0) + b1, 0.0) + b2


def generation_speed(receptiveField: int, numSamples: int, repeats: int = 3, **kwargs) -> dict:
    """Samples/s of fast and naive generation, one block of kernel-2 layers covering ``receptiveField``.

    The block has the fewest layers n with 2^n + 1 >= receptiveField (the exact
    receptive field is reported); ``kwargs`` override the other WaveNet
    arguments. The naive path continues a prime of receptive_field classes, so
    each of its steps runs on a full window; the fast path's step costs the
    same from the first sample (fixed-size queues), so it starts from the
    default prime and runs at least 2 * receptive_field samples. Best of ``repeats``.
    """
    layers = max(1, int(np.ceil(np.log2(max(receptiveField - 1, 1)))))
    arguments = {"outputSize": 256, "layersPerBlock": layers, "blocks": 1, "kernelSize": 2, **kwargs}
    torch.manual_seed(0)
    net = WaveNet(inputShape=[receptiveField], **arguments).eval()
    prime = torch.randint(0, net.classes, (net.receptive_field,)).numpy()
    result = {"receptive_field": net.receptive_field, **arguments}
    for name, fast in (("fast", True), ("naive", False)):
        n = max(numSamples, 2 * net.receptive_field) if fast else numSamples
        history = None if fast else prime
        net.generate(2, prime=history, fast=fast)  # first-call allocations
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            net.generate(n, prime=history, fast=fast)
            best = min(best, time.perf_counter() - start)
        result[f"{name}_samples"] = n
        result[f"{name}_samples_per_s"] = n / best
    result["ratio"] = result["fast_samples_per_s"] / result["naive_samples_per_s"]
    return result
