"""Seq2seq: flat layout, padding, attention by hand, greedy vs beam, learning; the synthetic tasks.

Independent expectations: attention scores written out with explicit sums
(q . k, q . k / sqrt(d), v^T tanh(W q + U k)), cross entropy computed by hand
over the real target tokens, log-probabilities gathered from the
teacher-forced logits, and the tasks' targets recomputed with str reversal
and datetime.
"""

import datetime
import math
import string
import time

import pytest
import torch
import torch.nn.functional as F

from sparkneural.datasets_seq2seq import (
    CHARACTERS, DIGITS, END_ID, MONTHS, Vocabulary, as_dataframe, dates_to_iso, encode_rows, reverse_digits,
)
from sparkneural.nn import build, names
from sparkneural.nn.seq2seq import Attention, Seq2Seq, flat_input, length_penalty

S, T, V = 8, 9, len(DIGITS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model(seed: int = 0, **kwargs) -> Seq2Seq:
    arguments = {
        "inputShape": [S + T], "outputSize": V, "sourceVocabSize": V, "maxSourceLength": S,
        "maxTargetLength": T, "embeddingDim": 8, "hiddenSize": 16, **kwargs,
    }
    torch.manual_seed(seed)
    return build("seq2seq", **arguments).eval()


def random_sources(n: int, seed: int, length: int = S) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (n,), generator=generator)
    ids = torch.randint(3, V, (n, length), generator=generator)
    ids[torch.arange(length)[None, :] >= lengths[:, None]] = 0
    return ids.float()


def test_seq2seq_is_registered_and_reads_the_flat_layout():
    assert "seq2seq" in names()
    net = small_model()
    x = flat_input([[5, 6, 7], [3] * S], [[7, 6, 5, 2], [3] * (T - 1) + [2]], S, T)
    assert x.shape == (2, S + T)
    assert x[0, :S].tolist() == [5, 6, 7, 0, 0, 0, 0, 0] and x[0, S : S + 5].tolist() == [7, 6, 5, 2, 0]
    assert net(x).shape == (2, T, V)


def test_teacher_forcing_predicts_each_target_from_the_earlier_ones_only():
    net = small_model()
    x = flat_input([[5, 6, 7]], [[7, 6, 5, 2]], S, T)
    changed = x.clone()
    changed[0, S + 2] = 9  # target[2]
    before, after = net(x), net(changed)
    torch.testing.assert_close(after[:, :3], before[:, :3])  # steps 0..2 read target[<t] only
    assert not torch.allclose(after[:, 3], before[:, 3])


def test_loss_is_cross_entropy_over_real_target_tokens_only():
    net = small_model()
    x = flat_input([[5, 6, 7], [4, 4]], [[7, 6, 5, 2], [4, 2]], S, T)
    logits = torch.randn(2, T, V)
    targets = x[:, S:].long()
    terms = [-torch.log_softmax(logits[b, t], dim=0)[targets[b, t]] for b in range(2) for t in range(T) if targets[b, t] != 0]
    torch.testing.assert_close(net.loss(logits, x[:, S:]), torch.stack(terms).mean())
    noisy = logits.clone()
    noisy[targets == 0] = 100 * torch.randn(int((targets == 0).sum()), V)
    torch.testing.assert_close(net.loss(noisy, x[:, S:]), net.loss(logits, x[:, S:]))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_changes_neither_encoder_states_nor_decoding(cell, bidirectional):
    net = small_model(cell=cell, bidirectional=bidirectional)
    source = torch.tensor([[5.0, 9.0, 4.0, 0, 0, 0, 0, 0]])
    batch = torch.cat([source, random_sources(3, seed=1)])
    batch[1] = torch.tensor([7.0] * S)  # a longer neighbour
    wider = F.pad(source, (0, 6))  # more padding columns than maxSourceLength
    memory_alone, mask, _ = net.encode(source[:, :3])
    for padded, row in ((source, 0), (batch, 0), (wider, 0)):
        memory, mask, _ = net.encode(padded)
        torch.testing.assert_close(memory[row, :3], memory_alone[0], atol=1e-6, rtol=1e-5)
        assert torch.all(memory[row, 3:] == 0) and mask[row].tolist()[:4] == [True, True, True, False]
    ids_alone, attention_alone = net.greedy(source[:, :3], maxOutputLength=T)
    for padded in (source, batch, wider):
        ids, attention = net.greedy(padded, maxOutputLength=T)
        assert ids[0].tolist() == ids_alone[0].tolist()
        torch.testing.assert_close(attention[0, :, :3], attention_alone[0], atol=1e-6, rtol=1e-5)
        assert torch.all(attention[0, :, 3:] == 0)


@pytest.mark.parametrize("attention", ["dot", "scaled_dot", "additive"])
def test_attention_ignores_padding_and_each_row_sums_to_one(attention):
    net = small_model(attention=attention, seed=2)
    source = random_sources(6, seed=3)
    real = source != 0
    _, weights = net.teacher_forced(source, torch.full((6, T), 5.0))
    assert torch.all(weights.masked_select(~real[:, None, :].expand_as(weights)) == 0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(6, T))
    ids, greedy_weights = net.greedy(source, maxOutputLength=T)
    emitted = torch.ones_like(ids, dtype=torch.bool)
    emitted[:, 1:] = (ids[:, :-1] != END_ID).cumprod(dim=1).bool()
    torch.testing.assert_close(greedy_weights.sum(dim=-1), emitted.float())
    assert torch.all(greedy_weights.masked_select(~real[:, None, :].expand_as(greedy_weights)) == 0)


def test_dot_and_scaled_dot_scores_differ_by_one_over_sqrt_d():
    torch.manual_seed(4)
    d = 16
    query, memory = torch.randn(2, d), torch.randn(2, 5, d)
    dot, scaled = Attention("dot", d, d), Attention("scaled_dot", d, d)
    by_hand = torch.tensor([[sum(query[b, i] * memory[b, j, i] for i in range(d)) for j in range(5)] for b in range(2)])
    torch.testing.assert_close(dot.scores(query, dot.keys(memory)), by_hand)
    torch.testing.assert_close(scaled.scores(query, scaled.keys(memory)), by_hand / math.sqrt(d))
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    context, weights = scaled(query, scaled.keys(memory), memory, mask)
    e = torch.exp(by_hand / math.sqrt(d)) * mask
    torch.testing.assert_close(weights, e / e.sum(dim=1, keepdim=True))
    torch.testing.assert_close(context[1], weights[1, 0] * memory[1, 0] + weights[1, 1] * memory[1, 1])


def test_dot_attention_over_a_bidirectional_memory_projects_the_keys():
    torch.manual_seed(5)
    attention = Attention("dot", 4, 8)
    query, memory = torch.randn(1, 4), torch.randn(1, 3, 8)
    keys = memory[0] @ attention.project.weight.T
    torch.testing.assert_close(attention.scores(query, attention.keys(memory))[0], keys @ query[0])


def test_additive_scores_are_v_tanh_of_w_q_plus_u_k():
    torch.manual_seed(6)
    attention = Attention("additive", 4, 6)
    query, memory = torch.randn(2, 4), torch.randn(2, 3, 6)
    W, U, v = attention.W.weight, attention.U.weight, attention.v.weight[0]
    with torch.no_grad():
        by_hand = torch.tensor([[float(v @ torch.tanh(W @ query[b] + U @ memory[b, j])) for j in range(3)] for b in range(2)])
    torch.testing.assert_close(attention.scores(query, attention.keys(memory)), by_hand)


def test_score_is_the_length_penalised_log_probability_of_the_target():
    net = small_model(seed=7)
    source = random_sources(2, seed=8)
    target = torch.tensor([[5, 6, 2, 0, 0, 0, 0, 0, 0], [4, 4, 4, 4, 2, 7, 7, 0, 0]])  # after endId is ignored
    logp = torch.log_softmax(net.teacher_forced(source, target)[0], dim=-1)
    for alpha in (0.0, 0.7):
        expected = torch.stack([
            sum(logp[0, t, target[0, t]] for t in range(3)) / ((5 + 3) / 6) ** alpha,
            sum(logp[1, t, target[1, t]] for t in range(5)) / ((5 + 5) / 6) ** alpha,
        ])
        torch.testing.assert_close(net.score(source, target, lengthPenalty=alpha), expected)
    assert float(length_penalty(torch.tensor(7), 1.0)) == pytest.approx(2.0)


@pytest.mark.parametrize("attention", ["scaled_dot", "none"])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_of_width_one_is_greedy(attention, alpha):
    net = small_model(attention=attention, seed=9)
    source = random_sources(5, seed=10)
    greedy_ids, greedy_attention = net.greedy(source, maxOutputLength=T)
    ids, beam_attention, scores = net.beam(source, maxOutputLength=T, beamWidth=1, lengthPenalty=alpha)
    assert ids.tolist() == greedy_ids.tolist()
    torch.testing.assert_close(beam_attention, greedy_attention)
    torch.testing.assert_close(scores, net.score(source, greedy_ids, lengthPenalty=alpha))


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_of_width_four_scores_at_least_as_well_as_greedy(alpha):
    for seed in range(4):  # random networks, whose outputs are far from confident
        net = small_model(seed=seed, cell="gru" if seed % 2 else "lstm")
        source = random_sources(6, seed=100 + seed)
        greedy_ids, _ = net.greedy(source, maxOutputLength=6)
        ids, _, scores = net.beam(source, maxOutputLength=6, beamWidth=4, lengthPenalty=alpha)
        torch.testing.assert_close(scores, net.score(source, ids, lengthPenalty=alpha))  # the score it reports is the model's
        assert torch.all(scores >= net.score(source, greedy_ids, lengthPenalty=alpha) - 1e-5)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"inputShape": [S + T + 1]}, "inputShape"),
        ({"targetVocabSize": V + 1}, "targetVocabSize"),
        ({"cell": "rnn"}, "cell"),
        ({"attention": "cosine"}, "attention"),
        ({"hiddenSize": 0}, "hiddenSize"),
        ({"dropout": -0.5}, "dropout"),
        ({"endId": V}, "endId"),
        ({"startId": 0}, "startId"),
    ],
)
def test_seq2seq_rejects_bad_arguments_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        small_model(**kwargs)


def test_flat_input_rejects_a_too_long_target():
    with pytest.raises(ValueError, match="maxTargetLength"):
        flat_input([[3]], [[3] * (T + 1)], S, T)


def test_learns_to_reverse_digit_strings(report):
    train, test = reverse_digits(4000, 3, 8, seed=1), reverse_digits(300, 3, 8, seed=2)
    x, x_test = flat_input(*encode_rows(train, DIGITS), S, T), flat_input(*encode_rows(test, DIGITS), S, T)
    net = small_model(seed=0, embeddingDim=16, hiddenSize=32, cell="gru").train()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    began = time.perf_counter()
    for _ in range(300):
        batch = x[torch.randint(0, len(x), (64,), generator=generator)]
        loss = net.loss(net(batch), batch[:, S:])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
    seconds = time.perf_counter() - began
    net.eval()
    greedy_ids, _ = net.greedy(x_test[:, :S], maxOutputLength=T)
    beam_ids, _, _ = net.beam(x_test[:100, :S], maxOutputLength=T, beamWidth=4)
    greedy = sum(DIGITS.decode(ids) == target for ids, (_, target) in zip(greedy_ids.tolist(), test)) / len(test)
    beam = sum(DIGITS.decode(ids) == target for ids, (_, target) in zip(beam_ids.tolist(), test)) / 100
    report("seq2seq reverse-digits exact match, greedy (300 steps)", greedy)
    report("seq2seq reverse-digits exact match, beam 4 (100 examples)", beam)
    report("seq2seq reverse-digits training seconds", seconds)
    assert greedy >= 0.9 and beam >= 0.9


# -- the synthetic tasks -------------------------------------------------------


def test_vocabulary_round_trips_text_and_reserves_pad_start_end():
    for text, target in reverse_digits(50, seed=3) + dates_to_iso(200, seed=3):
        for vocabulary in (CHARACTERS,) + ((DIGITS,) if text.isdigit() else ()):
            ids = vocabulary.encode(text)
            assert min(ids) >= 3 and vocabulary.decode(ids) == text
            encoded = vocabulary.encode(target, end=True)
            assert encoded[-1] == END_ID and vocabulary.decode(encoded + [0, 0]) == target
    assert DIGITS.decode([1, 3, 4, 2, 5]) == "01"  # start skipped, stops at end
    with pytest.raises(ValueError, match="text"):
        DIGITS.encode("12a")
    with pytest.raises(ValueError, match="characters"):
        Vocabulary("aa")


def test_tasks_are_deterministic_by_seed_and_their_targets_are_right():
    assert reverse_digits(20, seed=4) == reverse_digits(20, seed=4) != reverse_digits(20, seed=5)
    assert dates_to_iso(20, seed=4) == dates_to_iso(20, seed=4) != dates_to_iso(20, seed=5)
    digits = reverse_digits(500, minLength=2, maxLength=5, seed=6)
    assert all(target == source[::-1] and 2 <= len(source) <= 5 for source, target in digits)
    assert {len(source) for source, _ in digits} == {2, 3, 4, 5}
    month_of = {name: i + 1 for i, name in enumerate(MONTHS)} | {name[:3]: i + 1 for i, name in enumerate(MONTHS)}
    for source, target in dates_to_iso(500, seed=6):
        date = datetime.date.fromisoformat(target)
        assert datetime.date(1970, 1, 1) <= date <= datetime.date(2069, 12, 31)
        if "/" in source:
            d, m, yy = (int(p) for p in source.split("/"))
            assert (d, m, yy + (1900 if yy >= 70 else 2000)) == (date.day, date.month, date.year)
        elif "." in source:
            assert tuple(int(p) for p in source.split(".")) == (date.day, date.month, date.year)
        else:
            words = source.replace(",", "").split()
            month = next(w for w in words if w.isalpha())
            day = words[0] if words[0].isdigit() else words[1]
            assert (int(day), month_of[month], int(words[2])) == (date.day, date.month, date.year)


def test_the_tasks_cover_their_vocabularies():
    digits = "".join(s + t for s, t in reverse_digits(200, seed=7))
    assert set(digits) == set(DIGITS.characters)
    dates = "".join(s + t for s, t in dates_to_iso(2000, seed=7))
    expected = set(string.digits) | set("".join(MONTHS)) | set(" /-.,")
    assert set(dates) == expected and expected <= set(CHARACTERS.characters)


def test_as_dataframe_gives_id_arrays_ending_with_end_and_the_texts(spark):
    rows = reverse_digits(20, seed=8)
    df = as_dataframe(spark, rows, DIGITS)
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        ("source", "array<int>"), ("target", "array<int>"), ("sourceText", "string"), ("targetText", "string"),
    ]
    collected = sorted(df.collect(), key=lambda r: rows.index((r.sourceText, r.targetText)))
    for row, (source, target) in zip(collected, rows):
        assert row.source == DIGITS.encode(source) and row.target == DIGITS.encode(target) + [END_ID]
