"""Transformer encoder: attention against a hand computation and torch's, padding, positions, learning.

Independent expectations: attention written out head by head with explicit
exp / sum, torch.nn.functional.scaled_dot_product_attention,
torch.nn.MultiheadAttention and torch.nn.TransformerEncoderLayer given the
same weights, and the sinusoidal formula evaluated entry by entry.
"""

import math
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparkneural.nn import build, names
from sparkneural.nn.transformer import MultiHeadSelfAttention, TransformerEncoder, sinusoidal_encoding


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def attention_and_input():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(dModel=8, numHeads=2).double().eval()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    return attention, x, padding


def test_transformer_is_registered():
    assert "transformer" in names()


def test_attention_equals_a_computation_by_hand():
    attention, x, padding = attention_and_input()
    out, weights = attention(x, padding)
    d_k = 4
    for b in range(2):
        heads = []
        for h in range(2):
            rows = slice(h * d_k, (h + 1) * d_k)
            q = x[b] @ attention.query.weight[rows].T + attention.query.bias[rows]
            k = x[b] @ attention.key.weight[rows].T + attention.key.bias[rows]
            v = x[b] @ attention.value.weight[rows].T + attention.value.bias[rows]
            e = torch.exp(q @ k.T / math.sqrt(d_k))
            e = e * (~padding[b]).double()  # a padded key gets exp(-inf) = 0
            a = e / e.sum(dim=1, keepdim=True)
            torch.testing.assert_close(weights[b, h], a)
            heads.append(a @ v)
        expected = torch.cat(heads, dim=1) @ attention.output.weight.T + attention.output.bias
        torch.testing.assert_close(out[b], expected)
    assert torch.all(weights[1, :, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 2, 5, dtype=torch.float64))


def test_attention_equals_torch_scaled_dot_product_attention():
    attention, x, padding = attention_and_input()
    out, _ = attention(x, padding)
    q, k, v = (attention._heads(layer(x)) for layer in (attention.query, attention.key, attention.value))
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=~padding[:, None, None, :])  # True = attend
    torch.testing.assert_close(out, attention.output(heads.transpose(1, 2).reshape(2, 5, 8)))


def test_attention_equals_torch_multihead_attention_with_the_same_weights():
    attention, x, padding = attention_and_input()
    reference = nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([attention.query.weight, attention.key.weight, attention.value.weight]))
        reference.in_proj_bias.copy_(torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]))
        reference.out_proj.weight.copy_(attention.output.weight)
        reference.out_proj.bias.copy_(attention.output.bias)
    out, weights = attention(x, padding)
    expected, expected_weights = reference(x, x, x, key_padding_mask=padding, average_attn_weights=False)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_encoder_layer_equals_torch_post_norm_encoder_layer():
    torch.manual_seed(1)
    net = TransformerEncoder(
        inputShape=[6], outputSize=2, vocabSize=9, dModel=8, numHeads=2, feedForward=16, numLayers=1
    ).double().eval()
    ours = net.layers[0]
    reference = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).double().eval()
    a = ours.attention
    with torch.no_grad():
        reference.self_attn.in_proj_weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
        reference.self_attn.in_proj_bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
        reference.self_attn.out_proj.load_state_dict(a.output.state_dict())
        reference.linear1.load_state_dict(ours.feedForward[0].state_dict())
        reference.linear2.load_state_dict(ours.feedForward[3].state_dict())
        reference.norm1.load_state_dict(ours.norm1.state_dict())
        reference.norm2.load_state_dict(ours.norm2.state_dict())
    x = torch.randn(3, 6, 8, dtype=torch.float64)
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[1, 4:] = True
    expected = reference(x, src_key_padding_mask=padding)
    real = ~padding  # torch's fast path may zero the outputs at padded queries
    torch.testing.assert_close(ours(x, padding)[real], expected[real])


def test_sinusoidal_encoding_follows_the_formula():
    table = sinusoidal_encoding(7, 6)
    for p in range(7):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_extra_padding_does_not_change_the_output(pooling, positional):
    torch.manual_seed(2)
    net = build("transformer", inputShape=[12], outputSize=3, vocabSize=9, dModel=16, numHeads=4,
                pooling=pooling, positional=positional).eval()
    tokens = [4.0, 7.0, 3.0, 8.0, 5.0]
    alone = net(torch.tensor([tokens]))
    padded = net(torch.tensor([tokens + [0.0] * 2, tokens + [0.0] * 2]))
    full = net(torch.tensor([tokens + [0.0] * 7, [6.0] * 12]))  # batched with a longer sequence
    torch.testing.assert_close(padded[0], alone[0])
    torch.testing.assert_close(full[0], alone[0], atol=1e-5, rtol=1e-5)
    changed = torch.tensor([tokens + [0.0] * 6 + [6.0]])  # a real token where padding was
    assert not torch.allclose(net(changed), alone, atol=1e-4)


def test_without_positions_the_encoder_is_permutation_equivariant_and_mean_pooling_invariant():
    torch.manual_seed(3)
    x = torch.tensor([[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]])
    order = torch.tensor([5, 2, 0, 4, 1, 3])
    net = build("transformer", inputShape=[6], outputSize=2, vocabSize=9, dModel=16, numHeads=2, positional="none").eval()
    states, _ = net.encode(x)
    permuted_states, _ = net.encode(x[:, order])
    torch.testing.assert_close(permuted_states, states[:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net(x[:, order]), net(x), atol=1e-5, rtol=1e-5)
    for positional in ("sinusoidal", "learned"):
        torch.manual_seed(3)
        net = build("transformer", inputShape=[6], outputSize=2, vocabSize=9, dModel=16, numHeads=2, positional=positional).eval()
        assert not torch.allclose(net(x[:, order]), net(x), atol=1e-4)


def test_float_features_give_one_output_per_sequence_and_gradients():
    net = build("transformer", inputShape=[10, 3], outputSize=4, dModel=16, numHeads=2, pooling="last")
    out = net(torch.randn(5, 10, 3))
    assert out.shape == (5, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_a_sequence_of_padding_only_gives_finite_outputs():
    net = build("transformer", inputShape=[4], outputSize=2, vocabSize=5, dModel=8, numHeads=2)
    assert torch.isfinite(net(torch.zeros(2, 4))).all()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"dModel": 10, "numHeads": 4}, "dModel"),
        ({"numHeads": 0}, "numHeads"),
        ({"numLayers": 1.5}, "numLayers"),
        ({"dropout": 1.0}, "dropout"),
        ({"pooling": "max"}, "pooling"),
        ({"positional": "rotary"}, "positional"),
        ({"vocabSize": -1}, "vocabSize"),
        ({"vocabSize": 5, "padId": 5, "inputShape": [8]}, "padId"),
        ({"inputShape": [8]}, "inputShape"),  # floats need [timesteps, features]
        ({"vocabSize": 5}, "inputShape"),  # token ids need [timesteps]
    ],
)
def test_transformer_rejects_bad_arguments_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build("transformer", **{"inputShape": [8, 2], "outputSize": 2, **kwargs})


def which_marker_comes_first(n: int, steps: int, generator: torch.Generator):
    """Random tokens 3..9 with markers 1 and 2 at random places, trailing padding; label: 1 before 2."""
    lengths = torch.randint(4, steps + 1, (n,), generator=generator)
    x = torch.randint(3, 10, (n, steps), generator=generator)
    x[torch.arange(steps)[None, :] >= lengths[:, None]] = 0
    y = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        a, b = torch.randperm(int(lengths[i]), generator=generator)[:2].tolist()
        x[i, a], x[i, b] = 1, 2
        y[i] = int(a < b)
    return x.float(), y


def test_learns_which_of_two_markers_comes_first(report):
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = which_marker_comes_first(4000, 12, generator)
    x_test, y_test = which_marker_comes_first(500, 12, generator)
    torch.manual_seed(0)
    net = build("transformer", inputShape=[12], outputSize=2, vocabSize=10, dModel=32, numHeads=2,
                numLayers=2, feedForward=64, dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    began = time.perf_counter()
    for _ in range(300):
        index = torch.randint(0, len(x_train), (64,), generator=generator)
        loss = F.cross_entropy(net(x_train[index]), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(dim=1) == y_test).float().mean().item()
    report("transformer marker-order accuracy (300 steps)", accuracy)
    report("transformer marker-order training seconds", time.perf_counter() - began)
    assert accuracy >= 0.95
