"""DataFrame -> Parquet (Spark's writer) -> numpy shards on each rank (pyarrow).

The driver materialises only the columns training needs, under fixed names
(``x`` features as array<float>, ``y`` label, ``v`` validation flag), so the
code on the ranks does not depend on the user's column names. Each rank then
reads a contiguous, balanced slice of the rows (sizes differ by at most one),
touching only the Parquet row groups that overlap it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

FEATURES, LABEL, IS_VALIDATION = "x", "y", "v"


@dataclass(frozen=True)
class ParquetData:
    """Where the materialised rows are; small and picklable, it travels to every rank."""

    file_urls: tuple[str, ...]
    rows: int
    has_label: bool
    has_validation: bool


# Where training data goes when ``dataDir`` is None: the first of these Spark confs that
# is set (the second is the one earlier versions, which wrote through petastorm, read).
DATA_DIR_CONFS = ("spark.sparkdl.dataDir", "petastorm.spark.converter.parentCacheDirUrl")
# Rows per Parquet row group come from this many bytes (what a rank reads at once).
ROW_GROUP_BYTES = 32 * 1024 * 1024


def data_dir_url(spark, data_dir: str | None) -> str:
    """The URL of the directory under which a fit writes its training data."""
    import tempfile

    conf = next((spark.conf.get(k, None) for k in DATA_DIR_CONFS if spark.conf.get(k, None)), None)
    directory = data_dir or conf or os.path.join(tempfile.gettempdir(), "sparkdl-cache")
    return directory if urlparse(directory).scheme else "file://" + os.path.abspath(directory)


@contextlib.contextmanager
def materialize(df, featuresCol: str, labelCol: str | None = None, validation=None, data_dir: str | None = None) -> Iterator[ParquetData]:
    """Write the training columns of ``df`` to Parquet; delete them when the block ends.

    ``validation`` is None, a column name (boolean or 0/1: true marks a
    validation row) or a Spark Column. The files go to a new directory
    (``sparkdl-<random>``) under ``data_dir`` (default: the Spark conf
    ``spark.sparkdl.dataDir``, else ``petastorm.spark.converter.parentCacheDirUrl``,
    else a temporary directory), written by Spark's own Parquet writer in one
    job; only that new directory is deleted when the block exits, also when it
    exits with an error. Features (and array labels) are written as float32
    arrays, a numeric label as float32.
    """
    from pyspark.sql import functions as F

    from sparkdl.data.schema import as_array

    columns = [as_array(df, featuresCol).cast("array<float>").alias(FEATURES)]
    if labelCol is not None:
        label = as_array(df, labelCol).cast("array<float>") if _is_array_like(df, labelCol) else F.col(labelCol).cast("float")
        columns.append(label.alias(LABEL))
    if validation is not None:
        flag = F.col(validation) if isinstance(validation, str) else validation
        columns.append(flag.cast("boolean").alias(IS_VALIDATION))
    url = f"{data_dir_url(df.sparkSession, data_dir).rstrip('/')}/sparkdl-{uuid.uuid4().hex}"
    fs, path = pafs.FileSystem.from_uri(url)
    try:
        (df.select(*columns).write.option("compression", "uncompressed")
         .option("parquet.block.size", ROW_GROUP_BYTES).parquet(url))
        files = sorted(
            info.path for info in fs.get_file_info(pafs.FileSelector(path))
            if info.base_name.startswith("part-") and info.base_name.endswith(".parquet")
        )
        rows = sum(pq.ParquetFile(fs.open_input_file(f)).metadata.num_rows for f in files)
        yield ParquetData(
            file_urls=tuple(_url(url, path, f) for f in files),
            rows=rows,
            has_label=labelCol is not None,
            has_validation=validation is not None,
        )
    finally:
        _delete(fs, path)


def _url(url: str, path: str, file: str) -> str:
    """``file``, a path on the file system of ``url`` (whose path is ``path``), as a URL."""
    return url + file[len(path):]


def _delete(fs, path: str) -> None:
    try:
        fs.delete_dir(path)
    except FileNotFoundError:  # the write failed before creating anything
        pass


def open_parquet(url: str) -> pq.ParquetFile:
    """A Parquet file on any file system pyarrow reaches (a plain path or a URL)."""
    fs, path = pafs.FileSystem.from_uri(url if urlparse(url).scheme else "file://" + os.path.abspath(url))
    return pq.ParquetFile(fs.open_input_file(path))


def _is_array_like(df, column: str) -> bool:
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    return isinstance(df.schema[column].dataType, (T.ArrayType, VectorUDT))


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A Parquet column as numpy: list columns become (rows, length) without per-row objects."""
    array = column.combine_chunks()
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), -1) if len(array) else values.reshape(0, 0)
    return array.to_numpy(zero_copy_only=False)


def _read_with_petastorm(data: ParquetData) -> pa.Table:
    from petastorm import make_batch_reader

    urls = sorted(data.file_urls)
    batches = []
    with make_batch_reader(urls, num_epochs=1, shuffle_row_groups=False, workers_count=1, reader_pool_type="dummy") as reader:
        for batch in reader:
            batches.append(pa.table({name: _from_numpy(getattr(batch, name)) for name in batch._fields}))
    names = open_parquet(urls[0]).schema_arrow.names if urls else []
    return pa.concat_tables(batches).select(names) if batches else pa.table({n: [] for n in names})


def _from_numpy(values: np.ndarray) -> pa.Array:
    """A petastorm batch column (rows, ...) as Arrow: rows of arrays become a list column."""
    if values.ndim == 1 and values.dtype != object:
        return pa.array(values)
    flat = np.stack(values) if values.dtype == object else values
    return pa.ListArray.from_arrays(pa.array(np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32)), pa.array(flat.reshape(-1)))


def shard_bounds(rows: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous row range [start, stop) of ``rank``; sizes differ by at most one."""
    return rows * rank // size, rows * (rank + 1) // size


def petastorm_error() -> str | None:
    """Why petastorm's reader cannot be used here, or None when it imports."""
    try:
        import petastorm.reader  # noqa: F401
    except Exception as err:  # petastorm 0.13 imports modules that pyarrow 16 removed
        return f"{type(err).__name__}: {err}"
    return None


def read_shard(data: ParquetData, rank: int = 0, size: int = 1, loader: str = "pyarrow") -> dict[str, np.ndarray]:
    """This rank's rows as numpy arrays keyed ``x`` (rows, features), ``y``, ``v``.

    ``loader="petastorm"`` reads the same files through petastorm's public
    ``make_batch_reader`` (one pass, row groups in file order) and keeps this
    rank's slice, so it gives the same rows as the default reader.
    """
    if loader == "petastorm":
        table = _read_with_petastorm(data)
        start, stop = shard_bounds(table.num_rows, rank, size)
        table = table.slice(start, stop - start)
        return {name: _to_numpy(table.column(name)) for name in table.column_names}
    files = [open_parquet(url) for url in sorted(data.file_urls)]
    total = sum(f.metadata.num_rows for f in files)
    start, stop = shard_bounds(total, rank, size)
    tables: list[pa.Table] = []
    offset = 0
    for parquet_file in files:
        for group in range(parquet_file.metadata.num_row_groups):
            n = parquet_file.metadata.row_group(group).num_rows
            lo, hi = max(start, offset), min(stop, offset + n)
            if lo < hi:
                table = parquet_file.read_row_group(group)
                tables.append(table.slice(lo - offset, hi - lo))
            offset += n
    if not tables:
        schema = files[0].schema_arrow if files else pa.schema([])
        tables = [schema.empty_table()]
    table = pa.concat_tables(tables)
    return {name: _to_numpy(table.column(name)) for name in table.column_names}
