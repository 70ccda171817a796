"""Recurrent networks over ``[timesteps, features]`` inputs: LSTM, GRU, plain RNN, peephole LSTM.

Input (batch, timesteps, features) -> numLayers recurrent layers of hiddenSize
units (D = 2 directions with separate weights when bidirectional, dropout
between layers) -> (batch, timesteps, D * hiddenSize), then

- returnSequences=True:  a dense layer applied at every step
                          -> (batch, timesteps, outputSize)
- returnSequences=False: the forward direction's last step, concatenated with
                          the backward direction's output at step 0 (the last
                          step it reads) -> dense -> (batch, outputSize)

Peephole LSTM step (the cell state also feeds the gates, per-unit weights p):
    i_t = σ(W_i x_t + U_i h_{t-1} + p_i ⊙ c_{t-1} + b_i)
    f_t = σ(W_f x_t + U_f h_{t-1} + p_f ⊙ c_{t-1} + b_f)
    g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t = σ(W_o x_t + U_o h_{t-1} + p_o ⊙ c_t + b_o)
    h_t = o_t ⊙ tanh(c_t)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from sparkneural.nn.registry import register

CELLS = ("lstm", "gru", "rnn", "peephole_lstm")
_TORCH_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class PeepholeLSTMCell(nn.Module):
    """One step of a peephole LSTM (see the module docstring for the equations).

    Gate order in ``weight_ih`` / ``weight_hh`` / ``bias`` is (i, f, g, o),
    as in ``torch.nn.LSTMCell``; with zero peephole weights the two agree.

    >>> cell = PeepholeLSTMCell(3, 5)
    >>> h, c = cell(torch.zeros(2, 3), (torch.zeros(2, 5), torch.zeros(2, 5)))
    >>> h.shape, c.shape
    (torch.Size([2, 5]), torch.Size([2, 5]))
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.peephole_i = nn.Parameter(torch.empty(hidden_size))
        self.peephole_f = nn.Parameter(torch.empty(hidden_size))
        self.peephole_o = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # torch.nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_projection(self, x: torch.Tensor) -> torch.Tensor:
        """W x + b for any leading dims; done once for all steps, outside the time loop."""
        return x @ self.weight_ih.T + self.bias

    def step(
        self, projected: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from the already projected input ``W x_t + b``."""
        h, c = state
        gi, gf, gg, go = (projected + h @ self.weight_hh.T).chunk(4, dim=-1)
        i = torch.sigmoid(gi + self.peephole_i * c)
        f = torch.sigmoid(gf + self.peephole_f * c)
        c = f * c + i * torch.tanh(gg)
        o = torch.sigmoid(go + self.peephole_o * c)
        return o * torch.tanh(c), c

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.step(self.input_projection(x), state)


class PeepholeLSTM(nn.Module):
    """Stacked, optionally bidirectional peephole LSTM with ``torch.nn.LSTM``'s batch-first interface.

    Returns ``(output, (h_n, c_n))``: output (batch, T, D * hidden), h_n and
    c_n (numLayers * D, batch, hidden), ordered layer by layer, forward first.

    >>> lstm = PeepholeLSTM(3, 5, num_layers=2, bidirectional=True)
    >>> lstm(torch.zeros(2, 7, 3))[0].shape
    torch.Size([2, 7, 10])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            PeepholeLSTMCell(input_size if layer == 0 else hidden_size * self.directions, hidden_size)
            for layer in range(num_layers)
            for _ in range(self.directions)
        )
        self.dropout = nn.Dropout(dropout)

    def _run(
        self, cell: PeepholeLSTMCell, x: torch.Tensor, reverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, steps, _ = x.shape
        h = c = x.new_zeros(batch, self.hidden_size)
        projected = cell.input_projection(x)
        outputs = []
        for t in (reversed(range(steps)) if reverse else range(steps)):
            h, c = cell.step(projected[:, t], (h, c))
            outputs.append(h)
        if reverse:
            outputs.reverse()
        return torch.stack(outputs, dim=1), h, c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                x = self.dropout(x)
            outputs = []
            for direction in range(self.directions):
                out, h, c = self._run(self.cells[layer * self.directions + direction], x, reverse=direction == 1)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outputs, dim=-1)
        return x, (torch.stack(h_n), torch.stack(c_n))


@register("rnn")
class RecurrentNet(nn.Module):
    """A recurrent network for ``[timesteps, features]`` sequences with a dense head.

    ``cell`` is "lstm", "gru", "rnn" (tanh) or "peephole_lstm". With
    ``returnSequences`` the head runs at every step (sequence labelling,
    next-step prediction); without it, on the final state (classification or
    regression of the whole sequence).

    >>> net = RecurrentNet(inputShape=[20, 3], outputSize=2, cell="gru", hiddenSize=16, bidirectional=True)
    >>> net(torch.zeros(4, 20, 3)).shape
    torch.Size([4, 2])
    >>> RecurrentNet(inputShape=[20, 3], outputSize=1, returnSequences=True)(torch.zeros(4, 20, 3)).shape
    torch.Size([4, 20, 1])
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        cell: str = "lstm",
        hiddenSize: int = 64,
        numLayers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        returnSequences: bool = False,
    ):
        super().__init__()
        shape = [int(d) for d in inputShape]
        if len(shape) != 2 or any(d <= 0 for d in shape):
            raise ValueError(
                f"inputShape: expected [timesteps, features] (2 positive integers), found {list(inputShape)}"
            )
        if cell not in CELLS:
            raise ValueError(f"cell: expected one of {list(CELLS)}, found {cell!r}")
        for name, value in (("hiddenSize", hiddenSize), ("numLayers", numLayers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, found {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), found {dropout}")
        features = shape[1]
        self.hiddenSize, self.returnSequences = hiddenSize, bool(returnSequences)
        self.directions = 2 if bidirectional else 1
        # dropout acts between layers only (as in torch.nn.LSTM), so one layer has none
        between = float(dropout) if numLayers > 1 else 0.0
        if cell == "peephole_lstm":
            self.recurrent = PeepholeLSTM(features, hiddenSize, numLayers, bool(bidirectional), between)
        else:
            self.recurrent = _TORCH_CELLS[cell](
                features, hiddenSize, numLayers, batch_first=True, dropout=between, bidirectional=bool(bidirectional)
            )
        self.head = nn.Linear(self.directions * hiddenSize, int(outputSize))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.recurrent(x)  # (batch, T, D * hidden)
        if self.returnSequences:
            return self.head(out)
        last = out[:, -1, : self.hiddenSize]
        if self.directions == 2:
            # the backward direction reads T-1 ... 0, so its final output sits at step 0
            last = torch.cat([last, out[:, 0, self.hiddenSize :]], dim=-1)
        return self.head(last)
