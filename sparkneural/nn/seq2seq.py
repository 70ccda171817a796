"""Recurrent encoder-decoder with attention over token ids, trained with teacher forcing.

Flat input layout, one float row per example (what an estimator feeds):

    x = [source ids, padded with padId to maxSourceLength;
         target ids, padded with padId to maxTargetLength]      length S + T

Ids are float values of integers. Padding is trailing. The target ends with
endId and has no startId (T counts the endId). ``flat_input`` builds such rows.

Encoder: embedding + LSTM/GRU (bidirectional: D = 2) over the packed source,
so padding never enters a state; memory m_j (batch, S, D*H). The decoder
starts from s_0 = tanh(W_b [final forward state; final backward state])
(for an LSTM, h and c each through their own W_b).

Decoder step t (Luong et al. 2015, with input feeding), y_0 = startId:

    s_t   = cell([E y_{t-1}; h~_{t-1}], s_{t-1})           h~_0 = 0
    e_tj  = score(s_t, m_j),  -inf where source j is padding
    a_t   = softmax(e_t)          c_t = sum_j a_tj m_j
    h~_t  = tanh(W_c [c_t; s_t])  logits_t = W_o h~_t

    dot:         score = s^T k_j                k_j = m_j (D = 1) or W_k m_j (D = 2)
    scaled_dot:  score = s^T k_j / sqrt(H)
    additive:    score = v^T tanh(W s + U m_j)  (Bahdanau et al. 2015)
    none:        no attention, h~_t = tanh(W_c s_t)

Teacher forcing: forward(x) feeds [startId, target[:-1]] and returns logits
(batch, T, targetVocabSize) predicting target[t]. ``loss(logits, target)`` is
cross entropy over real tokens only (ignore_index=padId); a plain cross
entropy over all T steps would also train the model to predict padding.

Decoding (``greedy``, ``beam``) never emits padId or startId and stops at
endId. Scores are log-probabilities with the GNMT length penalty (Wu et al.
2016):

    score(y | x) = log P(y | x) / lp(|y|),   lp(L) = ((5 + L) / 6)^alpha

where |y| counts tokens up to and including the first endId (alpha = 0: the
plain log-probability).
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sparkneural.nn.registry import register

CELLS = ("lstm", "gru")
ATTENTIONS = ("dot", "scaled_dot", "additive", "none")
State = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]  # GRU: h; LSTM: (h, c)


def flat_input(
    sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
    maxSourceLength: int, maxTargetLength: int, padId: int = 0,
) -> torch.Tensor:
    """Rows [source padded to maxSourceLength, target padded to maxTargetLength] as floats."""
    x = torch.full((len(sources), maxSourceLength + maxTargetLength), float(padId))
    for row, (source, target) in enumerate(zip(sources, targets)):
        if len(source) > maxSourceLength or len(target) > maxTargetLength:
            raise ValueError(
                f"row {row}: expected a source of at most maxSourceLength={maxSourceLength} and a target of "
                f"at most maxTargetLength={maxTargetLength} ids, found {len(source)} and {len(target)}"
            )
        x[row, : len(source)] = torch.tensor(source, dtype=torch.float32)
        x[row, maxSourceLength : maxSourceLength + len(target)] = torch.tensor(target, dtype=torch.float32)
    return x


def length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's lp(L) = ((5 + L) / 6)^alpha."""
    return ((5.0 + length.to(torch.float32)) / 6.0) ** alpha


class Attention(nn.Module):
    """Attention of a decoder state over encoder memory: "dot", "scaled_dot" or "additive".

    ``keys(memory)`` is computed once per source; ``forward`` returns the
    context (batch, memorySize) and the weights (batch, S), zero where ``mask``
    (True = real) is False.

    >>> attention = Attention("additive", querySize=4, memorySize=6)
    >>> memory = torch.randn(2, 5, 6)
    >>> context, weights = attention(torch.randn(2, 4), attention.keys(memory), memory, torch.ones(2, 5, dtype=torch.bool))
    >>> context.shape, weights.shape
    (torch.Size([2, 6]), torch.Size([2, 5]))
    """

    def __init__(self, kind: str, querySize: int, memorySize: int):
        super().__init__()
        self.kind, self.querySize = kind, querySize
        if kind == "additive":
            self.W = nn.Linear(querySize, querySize, bias=False)
            self.U = nn.Linear(memorySize, querySize, bias=False)
            self.v = nn.Linear(querySize, 1, bias=False)
        elif memorySize != querySize:
            self.project = nn.Linear(memorySize, querySize, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        if self.kind == "additive":
            return self.U(memory)
        return self.project(memory) if hasattr(self, "project") else memory

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Unmasked scores (batch, S) of ``query`` (batch, querySize) against ``keys``."""
        if self.kind == "additive":
            return self.v(torch.tanh(self.W(query)[:, None, :] + keys)).squeeze(-1)
        scores = (keys @ query[:, :, None]).squeeze(-1)
        return scores / math.sqrt(self.querySize) if self.kind == "scaled_dot" else scores

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.scores(query, keys).masked_fill(~mask, float("-inf")), dim=-1)
        return (weights[:, :, None] * memory).sum(dim=1), weights


@register("seq2seq")
class Seq2Seq(nn.Module):
    """Encoder-decoder over token ids; ``forward`` is teacher-forced on the flat layout above.

    >>> net = Seq2Seq(inputShape=[8 + 6], outputSize=13, sourceVocabSize=13, maxSourceLength=8,
    ...               maxTargetLength=6, embeddingDim=8, hiddenSize=16)
    >>> x = flat_input([[5, 6, 7]], [[7, 6, 5, 2]], 8, 6)
    >>> logits = net(x)                    # (1, 6, 13)
    >>> loss = net.loss(logits, x[:, 8:])  # cross entropy, padding ignored
    >>> ids, attention = net.greedy(x[:, :8], maxOutputLength=6)
    >>> ids.shape, attention.shape
    (torch.Size([1, 6]), torch.Size([1, 6, 8]))
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        sourceVocabSize: int,
        maxSourceLength: int,
        maxTargetLength: int,
        targetVocabSize: int | None = None,
        embeddingDim: int = 64,
        hiddenSize: int = 128,
        cell: str = "lstm",
        bidirectional: bool = True,
        attention: str = "scaled_dot",
        padId: int = 0,
        startId: int = 1,
        endId: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, value in (("outputSize", outputSize), ("sourceVocabSize", sourceVocabSize),
                            ("maxSourceLength", maxSourceLength), ("maxTargetLength", maxTargetLength),
                            ("embeddingDim", embeddingDim), ("hiddenSize", hiddenSize)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, found {value!r}")
        if targetVocabSize is not None and targetVocabSize != outputSize:
            raise ValueError(f"targetVocabSize: expected outputSize={outputSize} (or None), found {targetVocabSize!r}")
        if [int(d) for d in inputShape] != [maxSourceLength + maxTargetLength]:
            raise ValueError(
                f"inputShape: expected [maxSourceLength + maxTargetLength] = [{maxSourceLength + maxTargetLength}], "
                f"found {list(inputShape)}"
            )
        if cell not in CELLS:
            raise ValueError(f"cell: expected one of {list(CELLS)}, found {cell!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {list(ATTENTIONS)}, found {attention!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), found {dropout}")
        for name, value in (("padId", padId), ("startId", startId), ("endId", endId)):
            if not 0 <= value < min(sourceVocabSize, outputSize):
                raise ValueError(f"{name}: expected an id in both vocabularies, found {value!r}")
        if len({padId, startId, endId}) != 3:
            raise ValueError(f"padId, startId, endId: expected distinct ids, found {padId}, {startId}, {endId}")
        self.S, self.T, self.V = maxSourceLength, maxTargetLength, outputSize
        self.H, self.cell, self.D = hiddenSize, cell, 2 if bidirectional else 1
        self.padId, self.startId, self.endId = padId, startId, endId
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.sourceEmbedding = nn.Embedding(sourceVocabSize, embeddingDim, padding_idx=padId)
        self.encoder = rnn(embeddingDim, hiddenSize, batch_first=True, bidirectional=bool(bidirectional))
        self.bridge = nn.ModuleList(nn.Linear(self.D * hiddenSize, hiddenSize) for _ in range(2 if cell == "lstm" else 1))
        self.targetEmbedding = nn.Embedding(outputSize, embeddingDim, padding_idx=padId)
        self.decoder = (nn.LSTMCell if cell == "lstm" else nn.GRUCell)(embeddingDim + hiddenSize, hiddenSize)
        self.attention = None if attention == "none" else Attention(attention, hiddenSize, self.D * hiddenSize)
        self.combine = nn.Linear(hiddenSize + (0 if attention == "none" else self.D * hiddenSize), hiddenSize)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hiddenSize, outputSize)

    # -- encoder ---------------------------------------------------------------

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Memory (batch, S, D*H), zero at padding; mask (batch, S), True = real; initial decoder state."""
        ids = source.round().long()
        mask = ids != self.padId
        # an empty source still needs one position to attend to
        mask[:, 0] |= ~mask.any(dim=1)
        lengths = mask.sum(dim=1)
        packed = pack_padded_sequence(
            self.dropout(self.sourceEmbedding(ids)), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        output, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(output, batch_first=True, total_length=ids.shape[1])
        finals = final if self.cell == "lstm" else (final,)
        # (D, batch, H) -> (batch, D*H): the forward final state, then the backward one
        state = tuple(
            torch.tanh(bridge(f.transpose(0, 1).reshape(ids.shape[0], -1))) for bridge, f in zip(self.bridge, finals)
        )
        return memory, mask, state if self.cell == "lstm" else state[0]

    # -- decoder ---------------------------------------------------------------

    def step(
        self, previous: torch.Tensor, state: State, feed: torch.Tensor, memory: torch.Tensor,
        keys: torch.Tensor | None, mask: torch.Tensor,
    ) -> tuple[torch.Tensor, State, torch.Tensor, torch.Tensor]:
        """One decoder step: (logits (n, V), state, feed h~_t, attention weights (n, S))."""
        inputs = torch.cat([self.dropout(self.targetEmbedding(previous)), feed], dim=-1)
        state = self.decoder(inputs, state)
        s = state[0] if self.cell == "lstm" else state
        if self.attention is None:
            weights = memory.new_zeros(memory.shape[:2])
            feed = torch.tanh(self.combine(s))
        else:
            context, weights = self.attention(s, keys, memory, mask)
            feed = torch.tanh(self.combine(torch.cat([context, s], dim=-1)))
        return self.out(self.dropout(feed)), state, feed, weights

    def _start(self, source: torch.Tensor):
        memory, mask, state = self.encode(source)
        keys = None if self.attention is None else self.attention.keys(memory)
        return memory, mask, state, keys, memory.new_zeros(memory.shape[0], self.H)

    def teacher_forced(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (batch, T, V) predicting target[t] from target[<t]; attention (batch, T, S)."""
        memory, mask, state, keys, feed = self._start(source)
        target = target.round().long()
        previous = F.pad(target[:, :-1], (1, 0), value=self.startId)
        logits, attention = [], []
        for t in range(target.shape[1]):
            step_logits, state, feed, weights = self.step(previous[:, t], state, feed, memory, keys, mask)
            logits.append(step_logits)
            attention.append(weights)
        return torch.stack(logits, dim=1), torch.stack(attention, dim=1)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The flat layout's (source (batch, S), target (batch, T))."""
        return x[:, : self.S], x[:, self.S : self.S + self.T]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_forced(*self.split(x))[0]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross entropy over the real (non-padding) target tokens."""
        targets = targets.round().long().reshape(logits.shape[:2])
        return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=self.padId)

    # -- scoring and decoding ---------------------------------------------------

    def _counted(self, target: torch.Tensor) -> torch.Tensor:
        """True at the tokens that count: up to and including the first endId, never padding."""
        ended_before = F.pad((target == self.endId).long().cumsum(dim=1)[:, :-1], (1, 0)) > 0
        return (target != self.padId) & ~ended_before

    def _never_emitted(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores with padId and startId ruled out: decoding emits neither."""
        scores = scores.clone()
        scores[:, [self.padId, self.startId]] = float("-inf")
        return scores

    @torch.no_grad()
    def score(self, source: torch.Tensor, target: torch.Tensor, lengthPenalty: float = 0.0) -> torch.Tensor:
        """log P(target | source) / lp(|target|) per example (batch,); see the module docstring."""
        target = target.round().long()
        logits, _ = self.teacher_forced(source, target)
        logp = torch.log_softmax(logits, dim=-1).gather(2, target.clamp(min=0)[:, :, None]).squeeze(2)
        counted = self._counted(target)
        return (logp * counted).sum(dim=1) / length_penalty(counted.sum(dim=1), lengthPenalty)

    @torch.no_grad()
    def greedy(self, source: torch.Tensor, maxOutputLength: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids (batch, maxOutputLength), endId included, padId after it; attention (batch, steps, S)."""
        memory, mask, state, keys, feed = self._start(source)
        batch = memory.shape[0]
        previous = torch.full((batch,), self.startId, dtype=torch.long, device=memory.device)
        done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        ids, attention = [], []
        for _ in range(maxOutputLength):
            logits, state, feed, weights = self.step(previous, state, feed, memory, keys, mask)
            previous = self._never_emitted(logits).argmax(dim=-1)
            ids.append(previous.masked_fill(done, self.padId))
            attention.append(weights.masked_fill(done[:, None], 0.0))
            done = done | (previous == self.endId)
        return torch.stack(ids, dim=1), torch.stack(attention, dim=1)

    @torch.no_grad()
    def beam(
        self, source: torch.Tensor, maxOutputLength: int, beamWidth: int = 4, lengthPenalty: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Beam search per example: ids and attention as ``greedy``, and each best hypothesis's score.

        Beams are ranked by log-probability; a hypothesis that emits endId
        leaves the beam, which shrinks by one. The hypotheses still open after
        maxOutputLength steps join the finished ones, and the best by
        ``score`` (with the length penalty) is returned. Width 1 is greedy.
        """
        if not isinstance(beamWidth, int) or beamWidth < 1:
            raise ValueError(f"beamWidth: expected a positive integer, found {beamWidth!r}")
        batch, device = source.shape[0], source.device
        ids = torch.full((batch, maxOutputLength), self.padId, dtype=torch.long, device=device)
        attention = torch.zeros(batch, maxOutputLength, source.shape[1], device=device)
        scores = torch.zeros(batch, device=device)
        for i in range(batch):
            tokens, weights, scores[i] = self._beam_one(source[i : i + 1], maxOutputLength, beamWidth, lengthPenalty)
            ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long, device=device)
            attention[i, : len(tokens)] = weights
        return ids, attention, scores

    def _beam_one(
        self, source: torch.Tensor, maxOutputLength: int, width: int, alpha: float
    ) -> tuple[list[int], torch.Tensor, float]:
        memory, mask, state, keys, feed = self._start(source)
        tokens = torch.full((1, 0), self.padId, dtype=torch.long, device=memory.device)
        history = memory.new_zeros(1, 0, memory.shape[1])  # attention rows of each open hypothesis
        logp = memory.new_zeros(1)
        finished: list[tuple[float, list[int], torch.Tensor]] = []
        for t in range(maxOutputLength):
            n = tokens.shape[0]
            previous = tokens[:, -1] if t else torch.full((n,), self.startId, dtype=torch.long, device=memory.device)
            logits, state, feed, weights = self.step(
                previous, state, feed, memory.expand(n, -1, -1), None if keys is None else keys.expand(n, -1, -1),
                mask.expand(n, -1),
            )
            candidates = (logp[:, None] + self._never_emitted(torch.log_softmax(logits, dim=-1))).reshape(-1)
            # a beam wider than the vocabulary would otherwise pick impossible (-inf) continuations
            top, index = candidates.topk(min(width - len(finished), int(torch.isfinite(candidates).sum())))
            beam, token = index // self.V, index % self.V
            tokens = torch.cat([tokens[beam], token[:, None]], dim=1)
            history = torch.cat([history[beam], weights[beam][:, None]], dim=1)
            ended = token == self.endId
            for j in ended.nonzero().flatten().tolist():
                penalised = float(top[j]) / float(length_penalty(torch.tensor(t + 1), alpha))
                finished.append((penalised, tokens[j].tolist(), history[j]))
            keep = ~ended
            if not keep.any():
                break
            tokens, history, logp, feed = tokens[keep], history[keep], top[keep], feed[beam][keep]
            state = tuple(s[beam][keep] for s in state) if self.cell == "lstm" else state[beam][keep]
        else:
            penalty = float(length_penalty(torch.tensor(maxOutputLength), alpha))
            finished.extend((float(s) / penalty, x.tolist(), h) for s, x, h in zip(logp, tokens, history))
        best_score, best_tokens, best_history = max(finished, key=lambda hypothesis: hypothesis[0])
        return best_tokens, best_history, best_score
