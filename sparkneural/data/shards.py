"""Each rank's rows: planned from the write summary, then held whole or streamed through a bounded shuffle buffer.

The plan needs no reading: a rank's share is a contiguous range of the
training rows and one of the validation rows (in row order; sizes differ by
at most one), cut into pieces of row groups from the counts
``materialize`` recorded.

A shard whose rows fit in the shuffle buffer is read once and kept (the
fastest path). A larger one is streamed: each epoch its pieces are visited
in a seeded random order, gathered into windows of at most ``bufferRows``
rows, and each window is shuffled (drawing from a copy of torch's global
generator as the epoch's seed left it) and cut into batches, while a background
thread reads and decodes the next window. A rank then holds at most two
windows (the one training and the next), whatever the data size. With a
buffer that holds the whole shard the two paths give the same batches.

On a GPU a shard that fits in a quarter of its free memory is read once
onto it and batched there, also when larger than the shuffle buffer (unless
``shuffleBufferRows`` was set): a GPU consumes rows faster than Parquet is
decoded. Otherwise a streamed window is pinned by the background thread and
copied to the GPU whole, without blocking, when its turn comes. Row orders
are drawn from torch's seeded global generator (on a GPU, by a generator
there seeded from it), so a resumed fit draws what the uninterrupted one drew.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sparkneural.data.filesystems import open_filesystem
from sparkneural.data.materialize import FEATURES, IS_VALIDATION, LABEL, ParquetData
from sparkneural.devices import to_device

# The shuffle buffer when ``bufferRows`` is None: as many rows as this many decoded bytes.
SHUFFLE_BUFFER_BYTES = 64 * 1024 * 1024
# Validation rows per forward pass.
EVALUATION_ROWS = 4096
# The share of free GPU memory a kept shard may take on the GPU.
GPU_SHARD_FRACTION = 0.25


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of the training (or validation) rows of one row group."""

    file: int
    group: int
    validation: bool
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def shard_bounds(rows: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous row range [start, stop) of ``rank``; sizes differ by at most one."""
    return rows * rank // size, rows * (rank + 1) // size


def plan_shard(data: ParquetData, rank: int, size: int) -> tuple[list[Piece], list[Piece]]:
    """The training pieces and the validation pieces of ``rank``, in row order."""
    plans = []
    for validation in (False, True):
        counts = [
            (f, g, held if validation else rows - held)
            for f, file in enumerate(data.files)
            for g, (rows, held) in enumerate(zip(file.groupRows, file.groupValidationRows))
        ]
        low, high = shard_bounds(sum(n for *_, n in counts), rank, size)
        pieces, offset = [], 0
        for f, g, n in counts:
            start, stop = max(low, offset), min(high, offset + n)
            if start < stop:
                pieces.append(Piece(f, g, validation, start - offset, stop - offset))
            offset += n
        plans.append(pieces)
    return plans[0], plans[1]


def epoch_rows(data: ParquetData, size: int) -> int:
    """Training rows per rank and epoch: the largest share; shorter shards wrap around to it."""
    return math.ceil((data.rows - data.validation_rows) / size)


class ParquetReader:
    """Reads pieces from the Parquet files on their file system, keeping the last few files open."""

    OPEN_FILES = 8

    def __init__(self, data: ParquetData):
        self.data, self._files, self._fs = data, OrderedDict(), None

    def table(self, piece: Piece) -> pa.Table:
        if piece.file not in self._files:
            if self._fs is None:
                self._fs, self._root = open_filesystem(self.data.root)
            if len(self._files) >= self.OPEN_FILES:
                self._files.popitem(last=False)[1].close()
            handle = self._fs.open_input_file(f"{self._root}/{self.data.files[piece.file].name}")
            self._files[piece.file] = pq.ParquetFile(handle)
        self._files.move_to_end(piece.file)
        return self._files[piece.file].read_row_group(piece.group, use_threads=False)


class TableReader:
    """Reads pieces from a table that holds every row in row order (what petastorm's reader returns)."""

    def __init__(self, data: ParquetData, table: pa.Table):
        self._table, starts, offset = table, {}, 0
        for f, file in enumerate(data.files):
            for g, rows in enumerate(file.groupRows):
                starts[f, g] = (offset, rows)
                offset += rows
        self._starts = starts

    def table(self, piece: Piece) -> pa.Table:
        return self._table.slice(*self._starts[piece.file, piece.group])


def read_piece(reader, piece: Piece) -> tuple[np.ndarray, np.ndarray | None]:
    """The piece's features (rows, features) as float32 and its labels (None without a label column)."""
    table = reader.table(piece)
    if IS_VALIDATION in table.column_names:
        chosen = _to_numpy(table[IS_VALIDATION]).astype(bool) == piece.validation
        rows = np.flatnonzero(chosen)[piece.start : piece.stop]
    else:
        rows = slice(piece.start, piece.stop)
    labels = _to_numpy(table[LABEL])[rows] if LABEL in table.column_names else None
    return _to_numpy(table[FEATURES])[rows].astype(np.float32, copy=False), labels


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A Parquet column as numpy: list columns become (rows, length) without per-row objects."""
    array = column.combine_chunks()
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), -1) if len(array) else values.reshape(0, 0)
    return array.to_numpy(zero_copy_only=False)


def read_pieces(reader, pieces: list[Piece]) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of ``pieces``, concatenated in the given order, into arrays allocated once."""
    total = sum(p.rows for p in pieces)
    features = labels = None
    position = 0
    for x, y in (read_piece(reader, p) for p in pieces):
        if features is None:
            features = np.empty((total, *x.shape[1:]), np.float32)
            labels = None if y is None else np.empty((total, *y.shape[1:]), y.dtype)
        features[position : position + len(x)] = x
        if labels is not None:
            labels[position : position + len(x)] = y
        position += len(x)
    return (np.zeros((0, 0), np.float32) if features is None else features), labels


class Shard:
    """A rank's training and validation rows as batches of tensors; ``inputShape`` shapes the features, ``task`` makes the targets."""

    def __init__(self, data: ParquetData, rank: int, size: int, task, input_shape, reader=None, device: torch.device | None = None):
        self.device = device or torch.device("cpu")
        self.train, self.validation_pieces = plan_shard(data, rank, size)
        self.reader = reader or ParquetReader(data)
        self.task, self.input_shape, self.has_label = task, tuple(input_shape), data.has_label
        self.train_rows = sum(p.rows for p in self.train)
        self.validation_rows = sum(p.rows for p in self.validation_pieces)

    def tensors(self, features: np.ndarray, labels: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        if labels is None and self.has_label:  # no rows at all
            labels = np.zeros(len(features), np.float32)
        x = torch.from_numpy(features.reshape(-1, *self.input_shape))
        return x, torch.from_numpy(self.task.targets(features, labels))

    def batches(self, seed: int, rows: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``rows`` training rows in batches; the shard repeats when shorter.

        Rows are permuted by torch's global generator as it stands at the
        first batch (the training loop seeds it each epoch, so a resumed
        epoch draws what the uninterrupted one drew); a streamed shard also
        orders its row groups by ``seed``.
        """
        raise NotImplementedError

    def validation(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation rows, in row order, in chunks of at most ``EVALUATION_ROWS``."""
        raise NotImplementedError


class InMemoryShard(Shard):
    """The whole shard read once and kept on ``keep_on`` (the CPU, or the GPU it trains on).

    With ``window_rows`` it is read that many rows at a time, each window
    moved to ``keep_on`` before the next is read, so the host never holds
    the whole shard.
    """

    def __init__(self, *args, keep_on: torch.device | None = None, window_rows: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_on = keep_on or torch.device("cpu")
        self.x, self.y = self._read(self.train, window_rows)
        self.x_val, self.y_val = self._read(self.validation_pieces, window_rows)

    def _read(self, pieces: list[Piece], window_rows: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        windows = _consecutive(pieces, window_rows) if window_rows else [pieces]
        if len(windows) <= 1:
            return tuple(t.to(self.keep_on) for t in self.tensors(*read_pieces(self.reader, pieces)))
        parts = [[t.to(self.keep_on) for t in self.tensors(*read_pieces(self.reader, w))] for w in windows]
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    def batches(self, seed, rows, batch_size):
        order = _permutation(len(self.x), self.x.device)
        order = order.repeat(math.ceil(rows / max(1, len(self.x))))[:rows]
        for start in range(0, rows, batch_size):
            index = order[start : start + batch_size]
            yield to_device(self.x[index], self.device), to_device(self.y[index], self.device)

    def validation(self):
        for start in range(0, len(self.x_val), EVALUATION_ROWS):
            yield self.x_val[start : start + EVALUATION_ROWS], self.y_val[start : start + EVALUATION_ROWS]


class StreamingShard(Shard):
    """The shard read window by window each epoch, the next window prefetched by a background thread."""

    def __init__(self, *args, buffer_rows: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer_rows = buffer_rows

    def windows(self, seed: int) -> list[list[Piece]]:
        """The pieces in a seeded random order, grouped into windows of at most ``buffer_rows`` rows (a piece
        larger than the buffer is a window of its own); within a window, in row order."""
        windows: list[list[int]] = [[]]
        held = 0
        for i in np.random.default_rng(seed).permutation(len(self.train)):
            if windows[-1] and held + self.train[i].rows > self.buffer_rows:
                windows.append([])
                held = 0
            windows[-1].append(int(i))
            held += self.train[i].rows
        return [[self.train[i] for i in sorted(w)] for w in windows if w]

    def _shuffled_windows(self, seed: int, rng_state: torch.Tensor):
        generator = torch.Generator()
        generator.set_state(rng_state)  # every pass permutes as the first did, like the in-memory shard's repeats
        loaded = (self._pinned(*self.tensors(*read_pieces(self.reader, w))) for w in self.windows(seed))
        with Prefetched(loaded, ahead=2) as windows:
            for x, y in windows:
                order = torch.randperm(len(x), generator=generator)
                yield to_device(x, self.device), to_device(y, self.device), order.to(self.device)

    def _pinned(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x.pin_memory(), y.pin_memory()) if self.device.type == "cuda" else (x, y)

    def batches(self, seed, rows, batch_size):
        parts, held, emitted = [], 0, 0
        rng_state = torch.get_rng_state()
        while emitted < rows:
            for x, y, order in self._shuffled_windows(seed, rng_state):
                position = 0
                while position < len(order) and emitted < rows:
                    take = min(batch_size - held, len(order) - position, rows - emitted - held)
                    index = order[position : position + take]
                    parts.append((x[index], y[index]))
                    held, position = held + take, position + take
                    if held == batch_size or emitted + held == rows:
                        yield _joined(parts)
                        emitted, parts, held = emitted + held, [], 0
                if emitted >= rows:
                    return

    def validation(self):
        loaded = (self.tensors(*read_piece(self.reader, p)) for p in self.validation_pieces)
        with Prefetched(loaded, ahead=2) as pieces:
            for x, y in pieces:
                for start in range(0, len(x), EVALUATION_ROWS):
                    yield x[start : start + EVALUATION_ROWS], y[start : start + EVALUATION_ROWS]


def _permutation(n: int, device: torch.device) -> torch.Tensor:
    """A random order of ``n`` rows, drawn from torch's global generator; on a GPU, by a generator there
    seeded from it (one CPU draw: the same seeds give the same orders, at the GPU's speed)."""
    if device.type == "cpu":
        return torch.randperm(n)
    generator = torch.Generator(device).manual_seed(int(torch.randint(2**62, ())))
    return torch.randperm(n, device=device, generator=generator)


def _consecutive(pieces: list[Piece], rows: int) -> list[list[Piece]]:
    """``pieces`` in order, in runs of at most ``rows`` rows (a larger piece is a run of its own)."""
    runs: list[list[Piece]] = [[]]
    held = 0
    for piece in pieces:
        if runs[-1] and held + piece.rows > rows:
            runs.append([])
            held = 0
        runs[-1].append(piece)
        held += piece.rows
    return [run for run in runs if run]


def _joined(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    if len(parts) == 1:
        return parts[0]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def open_shard(data: ParquetData, rank: int, size: int, task, input_shape, buffer_rows: int | None = None,
               loader: str = "pyarrow", device: torch.device | None = None) -> Shard:
    """This rank's shard: kept in memory when it fits in the shuffle buffer, else streamed through it.

    ``buffer_rows`` None means as many rows as ``SHUFFLE_BUFFER_BYTES`` hold.
    ``loader="petastorm"`` reads every row through petastorm's public
    ``make_batch_reader`` and keeps this rank's rows (in memory).

    Batches come on ``device`` (default: the CPU). On a GPU a shard that
    fits in ``GPU_SHARD_FRACTION`` of its free memory is kept there (with
    ``buffer_rows`` None, however large: the host then holds only one
    window of it at a time); validation chunks stay where the shard is.
    """
    device = device or torch.device("cpu")
    default_rows = max(1, SHUFFLE_BUFFER_BYTES // max(1, data.rowBytes))
    train, validation = plan_shard(data, rank, size)
    rows = sum(p.rows for p in train + validation)
    # twice the decoded rows: the targets may be a copy of the features (reconstruction)
    on_gpu = device.type == "cuda" and 2 * rows * data.rowBytes <= GPU_SHARD_FRACTION * torch.cuda.mem_get_info(device)[0]
    keep_on = device if on_gpu else torch.device("cpu")
    if loader == "petastorm":
        return InMemoryShard(data, rank, size, task, input_shape, reader=TableReader(data, read_with_petastorm(data)), device=device,
                             keep_on=keep_on)
    if on_gpu and buffer_rows is None:  # the GPU holds it: read once, window by window
        return InMemoryShard(data, rank, size, task, input_shape, device=device, keep_on=keep_on, window_rows=default_rows)
    buffer_rows = buffer_rows or default_rows
    if not train or rows <= buffer_rows:  # a rank without training rows has nothing to stream
        return InMemoryShard(data, rank, size, task, input_shape, device=device, keep_on=keep_on)
    return StreamingShard(data, rank, size, task, input_shape, buffer_rows=buffer_rows, device=device)


def read_shard(data: ParquetData, rank: int = 0, size: int = 1, loader: str = "pyarrow") -> dict[str, np.ndarray]:
    """This rank's rows as numpy arrays keyed ``x`` (rows, features), ``y`` and ``v``: its training rows, then its validation rows."""
    train, validation = plan_shard(data, rank, size)
    reader = TableReader(data, read_with_petastorm(data)) if loader == "petastorm" else ParquetReader(data)
    x, y = read_pieces(reader, train + validation)
    shard = {FEATURES: x}
    if y is not None:
        shard[LABEL] = y
    if data.has_validation:
        shard[IS_VALIDATION] = np.repeat([False, True], [sum(p.rows for p in train), sum(p.rows for p in validation)])
    return shard


def read_with_petastorm(data: ParquetData) -> pa.Table:
    """Every row, in row order, through petastorm's ``make_batch_reader`` (one pass, row groups in file order)."""
    from petastorm import make_batch_reader

    batches = []
    with make_batch_reader(list(data.file_urls), num_epochs=1, shuffle_row_groups=False, workers_count=1,
                           reader_pool_type="dummy") as reader:
        for batch in reader:
            batches.append(pa.table({name: _from_numpy(getattr(batch, name)) for name in batch._fields}))
    return pa.concat_tables(batches) if batches else pa.table({})


def _from_numpy(values: np.ndarray) -> pa.Array:
    """A petastorm batch column (rows, ...) as Arrow: rows of arrays become a list column."""
    if values.ndim == 1 and values.dtype != object:
        return pa.array(values)
    flat = np.stack(values) if values.dtype == object else values
    return pa.ListArray.from_arrays(pa.array(np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32)), pa.array(flat.reshape(-1)))


class Prefetched:
    """Iterates ``items`` on a background thread, at most ``ahead`` items produced and not yet given up by the consumer.

    An item counts until the consumer asks for the next one, so with
    ``ahead=2`` the consumer works on one item while the thread makes the
    next. An error in the thread is raised in the consumer.
    """

    _DONE = object()

    def __init__(self, items: Iterable, ahead: int):
        self._items, self._queue, self._slots = iter(items), queue.Queue(), threading.Semaphore(ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparkneural-prefetch", daemon=True)

    def _run(self) -> None:
        while True:
            while not self._slots.acquire(timeout=0.1):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                return
            try:
                item = next(self._items, self._DONE)
            except BaseException as err:  # handed to the consumer
                self._queue.put((None, err))
                return
            self._queue.put((item, None))
            if item is self._DONE:
                return

    def __enter__(self) -> Iterator:
        self._thread.start()
        return self._consume()

    def _consume(self) -> Iterator:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is self._DONE:
                return
            yield item
            self._slots.release()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

