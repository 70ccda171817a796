import pytest
import torch
import torch.nn.functional as F

from sparkneural.nn import build, names
from sparkneural.nn.recurrent import PeepholeLSTM, PeepholeLSTMCell

CELLS = ["lstm", "gru", "rnn", "peephole_lstm"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rnn_is_registered():
    assert "rnn" in names()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_every_cell_gives_last_step_or_per_step_outputs(cell, bidirectional, return_sequences):
    net = build(
        "rnn", inputShape=[7, 3], outputSize=4, cell=cell, hiddenSize=5, numLayers=2,
        bidirectional=bidirectional, dropout=0.2, returnSequences=return_sequences,
    )
    assert net.head.in_features == (10 if bidirectional else 5)
    expected = (2, 7, 4) if return_sequences else (2, 4)
    assert net(torch.randn(2, 7, 3)).shape == expected


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"cell": "transformer"}, "cell"),
        ({"hiddenSize": 0}, "hiddenSize"),
        ({"numLayers": 1.5}, "numLayers"),
        ({"dropout": -0.1}, "dropout"),
        ({"inputShape": [7]}, "inputShape"),
    ],
)
def test_rnn_rejects_bad_arguments_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build("rnn", **{"inputShape": [7, 3], "outputSize": 2, **kwargs})


@pytest.mark.parametrize("cell", CELLS)
def test_only_a_bidirectional_network_sees_later_inputs(cell):
    torch.manual_seed(0)
    x = torch.randn(1, 8, 2)
    later = x.clone()
    later[0, 6] += 1.0  # change step 6 only
    for bidirectional, earlier_steps_change in ((False, False), (True, True)):
        net = build(
            "rnn", inputShape=[8, 2], outputSize=3, cell=cell, hiddenSize=4,
            bidirectional=bidirectional, returnSequences=True,
        )
        y, y_later = net(x), net(later)
        assert torch.allclose(y[0, :6], y_later[0, :6]) is not earlier_steps_change
        assert not torch.allclose(y[0, 6:], y_later[0, 6:])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_last_step_output_joins_the_final_states_of_both_directions(cell):
    # torch's h_n holds the forward state after step T-1 and the backward state after step 0
    torch.manual_seed(0)
    net = build("rnn", inputShape=[6, 3], outputSize=2, cell=cell, hiddenSize=4, bidirectional=True)
    x = torch.randn(5, 6, 3)
    _, state = net.recurrent(x)
    h_n = state[0] if cell == "lstm" else state
    expected = F.linear(torch.cat([h_n[0], h_n[1]], dim=-1), net.head.weight, net.head.bias)
    torch.testing.assert_close(net(x), expected)


def test_peephole_cell_with_zero_peepholes_is_torch_lstm_cell():
    torch.manual_seed(0)
    cell, reference = PeepholeLSTMCell(3, 5), torch.nn.LSTMCell(3, 5)
    with torch.no_grad():
        for p in (cell.peephole_i, cell.peephole_f, cell.peephole_o):
            p.zero_()
        reference.weight_ih.copy_(cell.weight_ih)
        reference.weight_hh.copy_(cell.weight_hh)
        reference.bias_ih.copy_(cell.bias)
        reference.bias_hh.zero_()
    x, h, c = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    for ours, theirs in zip(cell(x, (h, c)), reference(x, (h, c))):
        torch.testing.assert_close(ours, theirs)


def test_peephole_gates_read_the_cell_state_as_the_formula_says():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(3, 5)
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    c_prev = torch.randn(4, 5, requires_grad=True)
    h_t, c_t = cell(x, (h, c_prev))

    # the equations, by hand
    W, U, b = cell.weight_ih, cell.weight_hh, cell.bias
    pre = x @ W.T + h @ U.T + b
    a_i, a_f, a_g, a_o = pre.detach().chunk(4, dim=1)
    c0 = c_prev.detach()
    p_i, p_f, p_o = cell.peephole_i.detach(), cell.peephole_f.detach(), cell.peephole_o.detach()
    i, f, g = torch.sigmoid(a_i + p_i * c0), torch.sigmoid(a_f + p_f * c0), torch.tanh(a_g)
    c = f * c0 + i * g
    o = torch.sigmoid(a_o + p_o * c)
    torch.testing.assert_close(c_t, c)
    torch.testing.assert_close(h_t, o * torch.tanh(c))

    # every unit depends on its own c_{t-1} only, so dh/dc_{t-1} is diagonal:
    # dc/dc_prev = f + c_prev f (1 - f) p_f + g i (1 - i) p_i
    # dh/dc      = o (1 - o) p_o tanh(c) + o (1 - tanh^2 c)
    dc = f + c0 * f * (1 - f) * p_f + g * i * (1 - i) * p_i
    dh = o * (1 - o) * p_o * torch.tanh(c) + o * (1 - torch.tanh(c) ** 2)
    (grad,) = torch.autograd.grad(h_t.sum(), c_prev)
    torch.testing.assert_close(grad, dh * dc)
    # without peepholes the gates ignore c_{t-1} and the derivative is o (1 - tanh^2 c) f
    assert not torch.allclose(grad, o * (1 - torch.tanh(c) ** 2) * f)


def test_peephole_layer_runs_the_cell_over_time_in_both_directions():
    torch.manual_seed(0)
    lstm = PeepholeLSTM(3, 4, num_layers=1, bidirectional=True)
    x = torch.randn(2, 5, 3)
    out, (h_n, c_n) = lstm(x)
    forward_cell, backward_cell = lstm.cells
    state = (torch.zeros(2, 4), torch.zeros(2, 4))
    for t in range(5):
        state = forward_cell(x[:, t], state)
        torch.testing.assert_close(out[:, t, :4], state[0])
    torch.testing.assert_close(h_n[0], state[0])
    state = (torch.zeros(2, 4), torch.zeros(2, 4))
    for t in reversed(range(5)):
        state = backward_cell(x[:, t], state)
        torch.testing.assert_close(out[:, t, 4:], state[0])
    torch.testing.assert_close(c_n[1], state[1])


def test_stacked_peephole_lstm_has_separate_cells_per_layer_and_direction():
    lstm = PeepholeLSTM(3, 4, num_layers=3, bidirectional=True, dropout=0.5)
    assert len(lstm.cells) == 6
    assert [c.input_size for c in lstm.cells] == [3, 3, 8, 8, 8, 8]
    out, (h_n, c_n) = lstm(torch.randn(2, 5, 3))
    assert out.shape == (2, 5, 8) and h_n.shape == c_n.shape == (6, 2, 4)


def test_dropout_between_layers_is_active_only_in_training():
    torch.manual_seed(0)
    net = build("rnn", inputShape=[5, 3], outputSize=2, cell="peephole_lstm", hiddenSize=8, numLayers=2, dropout=0.5)
    x = torch.randn(4, 5, 3)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    assert not torch.allclose(net(x), net(x))


@pytest.mark.parametrize("cell", ["lstm", "peephole_lstm"])
def test_lstm_learns_the_sign_of_a_sequence_sum(cell):
    torch.manual_seed(0)
    x = torch.randn(512, 10, 1)
    y = (x.sum(dim=(1, 2)) > 0).long()
    net = build("rnn", inputShape=[10, 1], outputSize=2, cell=cell, hiddenSize=16)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for step in range(150):
        batch = slice(step % 8 * 64, step % 8 * 64 + 64)
        loss = F.cross_entropy(net(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x_test = torch.randn(256, 10, 1)
    accuracy = (net.eval()(x_test).argmax(dim=1) == (x_test.sum(dim=(1, 2)) > 0).long()).float().mean()
    assert accuracy > 0.9
