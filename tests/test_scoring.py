"""Scoring Arrow batches (``sparkneural.estimators.scoring``): results, order, overlap of the stages, chunk sizes."""

import threading

import numpy as np
import pyarrow as pa
import pytest
import torch

from sparkneural.data import arrow
from sparkneural.estimators import inference, scoring
from sparkneural.training.tasks import get_task

ARCHITECTURE = {"architecture": "mlp", "architectureParams": {"hiddenLayers": [16]}, "inputShape": [6], "outputSize": 3}
CLASSIFIER_OUTPUTS = [("raw", arrow.dense_vectors), ("probability", arrow.dense_vectors), ("prediction", arrow.doubles)]


def _lists(x: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    return pa.array([row.tolist() if valid is None or valid[i] else None for i, row in enumerate(x)], pa.list_(pa.float32()))


def _score(net, arrays, batch_size=4, trace=None, network=None):
    task = get_task("classification")
    network = network or (lambda x: scoring.launch(net, x, task, None, "32", "column 'f'"))
    return list(scoring.score(iter(arrays), column=lambda array: array, width=6, batch_size=batch_size,
                              network=network, outputs=CLASSIFIER_OUTPUTS, label="column 'f'", trace=trace))


def test_scored_batches_come_back_in_order_with_the_network_s_outputs_and_null_rows_null():
    torch.manual_seed(0)
    net = inference.load_network(ARCHITECTURE, None)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((n, 6)).astype(np.float32) for n in (9, 1, 0, 7)]
    valid = [np.ones(len(x), bool) for x in xs]
    valid[0][3] = False
    arrays = [_lists(x, v) for x, v in zip(xs, valid)]

    scored = _score(net, arrays, batch_size=4)

    assert [batch for batch, _ in scored] == arrays
    for x, ok, (_, (raw, probability, prediction)) in zip(xs, valid, scored):
        with torch.inference_mode():
            logits = net(torch.from_numpy(np.where(ok[:, None], x, 0))).double().numpy()
        expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        got = [None if p is None else p["values"] for p in probability.to_pylist()]
        assert [g is None for g in got] == list(~ok)
        for g, e, row_ok in zip(got, expected, ok):
            if row_ok:
                np.testing.assert_allclose(g, e, rtol=1e-6)
        assert prediction.to_pylist() == [float(np.argmax(row)) if row_ok else None for row, row_ok in zip(logits, ok)]
        assert len(raw) == len(x)


def test_the_next_batch_is_decoded_while_the_forward_pass_of_the_one_before_runs():
    net = inference.load_network(ARCHITECTURE, None)
    task = get_task("classification")
    arrays = [_lists(np.zeros((2, 6), np.float32)) for _ in range(3)]
    second_decoded = threading.Event()
    seen = []

    def column(array):
        seen.append(len(seen))
        if len(seen) == 2:
            second_decoded.set()
        return array

    def network(x):
        if not second_decoded.is_set():  # the first batch's forward pass waits for the second batch's decoding
            assert second_decoded.wait(timeout=30), "batch 2 was not decoded while batch 1's forward pass ran"
        return scoring.launch(net, x, task)

    scored = scoring.score(iter(arrays), column=column, width=6, batch_size=8, network=network,
                           outputs=CLASSIFIER_OUTPUTS, label="column 'f'")
    assert len(list(scored)) == 3


def test_the_trace_records_every_stage_of_every_batch():
    net = inference.load_network(ARCHITECTURE, None)
    trace = []
    _score(net, [_lists(np.ones((5, 6), np.float32)) for _ in range(3)], batch_size=2, trace=trace)
    stages = [stage for stage, _, _ in trace]
    assert stages.count("decode") == stages.count("forward") == stages.count("encode") == 3
    assert all(end >= start for _, start, end in trace)


def test_a_nan_is_an_input_error_naming_the_column_and_the_forward_thread_stops():
    net = inference.load_network(ARCHITECTURE, None)
    x = np.zeros((3, 6), np.float32)
    x[1, 2] = np.nan
    before = threading.active_count()
    with pytest.raises(arrow.InputError, match=r"^column 'f': expected finite values, found 1 NaN"):
        _score(net, [_lists(np.zeros((2, 6), np.float32)), _lists(x), _lists(np.zeros((2, 6), np.float32))])
    assert threading.active_count() == before


def test_packed_outputs_come_back_with_their_shapes_dtypes_and_the_count_of_bad_inputs():
    outputs = {"probability": torch.rand(5, 3, dtype=torch.float64), "prediction": torch.tensor([0, 2, 1, 1, 0]),
               "embedding": torch.rand(5, 2, dtype=torch.bfloat16)}
    packed, unpack = scoring._pack(outputs, torch.tensor(7))
    assert packed.dtype == torch.float64 and packed.shape == (15 + 5 + 10 + 1,)
    bad, values = unpack(packed.numpy())
    assert bad == 7
    np.testing.assert_array_equal(values["probability"], outputs["probability"].numpy())
    assert values["prediction"].dtype == np.int64 and values["prediction"].tolist() == [0, 2, 1, 1, 0]
    assert values["embedding"].dtype == np.float32
    np.testing.assert_array_equal(values["embedding"], outputs["embedding"].float().numpy())


def test_largest_and_total_activation_bytes_per_row_of_an_mlp():
    architecture = {"architecture": "mlp", "architectureParams": {"hiddenLayers": [2048, 8]}, "inputShape": [6], "outputSize": 3}
    net = inference.load_network(architecture, None)
    largest, total = scoring.activation_bytes(net, np.zeros((2, 6), np.float32), get_task("regression"))
    assert largest == 2048 * 4  # the first hidden layer's output, float32
    assert total >= (2048 + 2048 + 8 + 8 + 3) * 4  # linear and activation outputs, the head's


@pytest.mark.parametrize("largest, arrow_rows, expected", [
    (8 * 1024, 10_000, 256),  # 2 MiB / 8 KiB
    (62_720, 10_000, 32),  # LeNet's widest layer: 2 MiB / 61 KiB = 33.4 -> a power of two below
    (64, 10_000, 512),  # a narrow network: at most 512 rows on a CPU
    (10 << 20, 10_000, 16),  # a huge activation: at least 16 rows
    (1024, 100, 100),  # never more than one Arrow batch
])
def test_automatic_rows_per_chunk_on_a_cpu(largest, arrow_rows, expected):
    assert scoring.auto_batch_size(largest, 3 * largest, "cpu", arrow_rows) == expected


def test_automatic_rows_per_chunk_on_a_gpu_fill_a_quarter_of_its_free_memory():
    # 16 GiB free, 1 MiB of activations per row: a quarter is 4096 rows
    assert scoring.auto_batch_size(1 << 18, 1 << 20, torch.device("cuda", 0), 1 << 30, free_bytes=16 << 30) == 4096
    assert scoring.auto_batch_size(4, 16, torch.device("cuda", 0), 1 << 30, free_bytes=80 << 30) == scoring.MAX_GPU_ROWS
    assert scoring.auto_batch_size(4, 16, torch.device("cuda", 0), 10_000, free_bytes=80 << 30) == 10_000


def test_an_empty_batch_gives_empty_columns_of_the_output_types():
    net = inference.load_network(ARCHITECTURE, None)
    (_, (raw, probability, prediction)), = _score(net, [_lists(np.zeros((0, 6), np.float32))])
    assert len(raw) == len(probability) == len(prediction) == 0
    assert raw.type == arrow.VECTOR_TYPE and prediction.type == pa.float64()
