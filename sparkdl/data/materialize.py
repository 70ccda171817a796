"""DataFrame -> Parquet (petastorm's Spark converter) -> numpy shards on each rank.

The driver materialises only the columns training needs, under fixed names
(``x`` features as array<float>, ``y`` label, ``v`` validation flag), so the
code on the ranks does not depend on the user's column names. Each rank then
reads a contiguous, balanced slice of the rows (sizes differ by at most one),
touching only the Parquet row groups that overlap it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

FEATURES, LABEL, IS_VALIDATION = "x", "y", "v"


@dataclass(frozen=True)
class ParquetData:
    """Where the materialised rows are; small and picklable, it travels to every rank."""

    file_urls: tuple[str, ...]
    rows: int
    has_label: bool
    has_validation: bool


CACHE_CONF = "petastorm.spark.converter.parentCacheDirUrl"


def _use_data_dir(spark, data_dir: str | None) -> None:
    """Point petastorm at ``data_dir``, or at a temporary directory when nothing is set."""
    if data_dir is None and spark.conf.get(CACHE_CONF, None):
        return
    import tempfile

    directory = data_dir or os.path.join(tempfile.gettempdir(), "sparkdl-cache")
    url = directory if urlparse(directory).scheme else "file://" + os.path.abspath(directory)
    spark.conf.set(CACHE_CONF, url)


@contextlib.contextmanager
def materialize(df, featuresCol: str, labelCol: str | None = None, validation=None, data_dir: str | None = None) -> Iterator[ParquetData]:
    """Write the training columns of ``df`` to Parquet; delete them when the block ends.

    ``validation`` is None, a column name (boolean or 0/1: true marks a
    validation row) or a Spark Column. The files go to a new directory under
    ``data_dir`` (default: the Spark conf ``petastorm.spark.converter.parentCacheDirUrl``,
    else a temporary directory) and only that directory is deleted when the
    block exits, also when it exits with an error.
    """
    from pyspark.sql import functions as F

    from sparkdl.data.schema import as_array

    columns = [as_array(df, featuresCol).alias(FEATURES)]
    if labelCol is not None:
        columns.append(as_array(df, labelCol).alias(LABEL) if _is_array_like(df, labelCol) else F.col(labelCol).alias(LABEL))
    if validation is not None:
        flag = F.col(validation) if isinstance(validation, str) else validation
        columns.append(flag.cast("boolean").alias(IS_VALIDATION))
    _use_data_dir(df.sparkSession, data_dir)
    # petastorm warns about small files and float casts on every call: expected here.
    logging.getLogger("petastorm").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        converter = _converter(df.select(*columns))
    try:
        yield ParquetData(
            file_urls=tuple(converter.file_urls),
            rows=len(converter),
            has_label=labelCol is not None,
            has_validation=validation is not None,
        )
    finally:
        converter.delete()


def _converter(df):
    """petastorm's Spark converter for ``df`` (float32), its files and row count.

    ``make_spark_converter`` follows its Parquet write with two more Spark
    jobs, a read of the files' schema and a ``count()``, to learn what the
    write already knows. When the cache directory is local (or a mounted
    shared file system, which is what the ranks read), the files are listed
    and their rows summed from the Parquet footers instead.
    """
    from petastorm.spark import spark_dataset_converter as converters

    parent = converters._get_parent_cache_dir_url()
    if urlparse(parent).scheme not in ("file", ""):
        return converters.make_spark_converter(df, dtype="float32")
    url = converters._cache_df_or_retrieve_cache_data_url(
        df, parent, converters.DEFAULT_ROW_GROUP_SIZE_BYTES, "uncompressed", "float32"
    )
    directory = _local_path(url)
    files = sorted(
        os.path.join(directory, name) for name in os.listdir(directory) if name.startswith("part-") and name.endswith(".parquet")
    )
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return converters.SparkDatasetConverter(url, ["file://" + path for path in files], rows)


def _is_array_like(df, column: str) -> bool:
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    return isinstance(df.schema[column].dataType, (T.ArrayType, VectorUDT))


def _local_path(url: str) -> str:
    parsed = urlparse(url)
    return parsed.path if parsed.scheme in ("file", "") else url


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A Parquet column as numpy: list columns become (rows, length) without per-row objects."""
    array = column.combine_chunks()
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), -1) if len(array) else values.reshape(0, 0)
    return array.to_numpy(zero_copy_only=False)


def shard_bounds(rows: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous row range [start, stop) of ``rank``; sizes differ by at most one."""
    return rows * rank // size, rows * (rank + 1) // size


def read_shard(data: ParquetData, rank: int = 0, size: int = 1) -> dict[str, np.ndarray]:
    """This rank's rows as numpy arrays keyed ``x`` (rows, features), ``y``, ``v``."""
    files = [pq.ParquetFile(_local_path(url)) for url in sorted(data.file_urls)]
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
