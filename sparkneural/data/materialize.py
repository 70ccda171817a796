"""DataFrame -> Parquet on any file system, written by the executors with pyarrow.

The driver materialises only the columns training needs, under fixed names
(``x`` features as array<float>, ``y`` label, ``v`` validation flag), so the
code on the ranks does not depend on the user's column names. Each Spark task
writes its partition as one Parquet file of bounded row groups and reports
each group's row and validation-row counts, so the ranks plan their shards
from this small summary without listing or reading anything
(``sparkneural.data.shards``).

The write goes through pyarrow on the executors rather than Spark's Hadoop
writer, so a data directory on S3, GCS, ADLS or HDFS needs only what the
ranks need to read it (pyarrow's file systems), not Hadoop connector jars.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import posixpath
import re
import stat
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sparkneural.data.filesystems import check_url, join, normalize, open_filesystem, redacted, scheme
from sparkneural.former_names import conf_value

FEATURES, LABEL, IS_VALIDATION = "x", "y", "v"
# Where training data goes when ``dataDir`` is None: the first of these Spark confs that
# is set (the second is the one earlier versions, which wrote through petastorm, read).
DATA_DIR_CONFS = ("spark.sparkneural.dataDir", "petastorm.spark.converter.parentCacheDirUrl")
# Decoded bytes per Parquet row group: the unit a rank reads, shuffles and prefetches.
ROW_GROUP_BYTES = 8 * 1024 * 1024
MAX_GROUP_ROWS = 1 << 20
WRITTEN_SCHEMA = "file string, rows array<bigint>, validationRows array<bigint>, rowBytes bigint"
# The name of the directory a fit creates under the data directory, and the only one it deletes.
FIT_DIRECTORY = re.compile(r"sparkneural-[0-9a-f]{32}")


@dataclass(frozen=True)
class DataFile:
    """One written Parquet file: its name and, per row group, its rows and how many are validation rows."""

    name: str
    groupRows: tuple[int, ...]
    groupValidationRows: tuple[int, ...]


@dataclass(frozen=True)
class ParquetData:
    """Where the materialised rows are and how they are laid out; small and picklable, it travels to every rank."""

    root: str  # the directory: an absolute path or a URI (any scheme ``sparkneural.data.filesystems`` accepts)
    files: tuple[DataFile, ...]  # in row order
    has_label: bool
    has_validation: bool
    rowBytes: int = 0  # decoded bytes of one row (the widest file's)

    @property
    def rows(self) -> int:
        return sum(sum(f.groupRows) for f in self.files)

    @property
    def validation_rows(self) -> int:
        return sum(sum(f.groupValidationRows) for f in self.files)

    @property
    def file_urls(self) -> tuple[str, ...]:
        """The files as URIs (``file://`` ones for local files), for readers that take only URIs."""
        return tuple(normalize(join(self.root, f.name)) for f in self.files)


def data_dir_url(spark, data_dir: str | None) -> str:
    """The directory under which a fit writes its training data, as an absolute path or a URI.

    ``data_dir``, else the first of ``DATA_DIR_CONFS`` that is set, else a
    directory private to this user (``private_data_dir``).
    """
    if data_dir is None:
        name, data_dir = next(((k, v) for k in DATA_DIR_CONFS if (v := conf_value(spark.conf, k))), (None, None))
        if name is not None:
            check_url(name, data_dir)
    if data_dir is None:
        local_dirs = spark.conf.get("spark.local.dir", None) or ""
        data_dir = private_data_dir(local_dirs.split(",")[0].strip() or tempfile.gettempdir())
    return data_dir if scheme(data_dir) else os.path.abspath(data_dir)  # the driver's working directory, not an executor's


def private_data_dir(parent: str) -> str:
    """``<parent>/sparkneural-<uid>``, created with mode 0700; one already there must be this user's own private directory.

    Any user can create a directory in a shared temporary directory: one
    found there is used only when it is a real directory (not a link), owned
    by this user, with no permission for the group or others.
    """
    path = os.path.join(parent, f"sparkneural-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode):
        why = "is a symbolic link" if stat.S_ISLNK(found.st_mode) else "is not a directory"
    elif found.st_uid != os.getuid():
        why = f"is owned by uid {found.st_uid}, not by this user (uid {os.getuid()})"
    elif found.st_mode & 0o077:
        why = f"has mode {stat.S_IMODE(found.st_mode):o}, which lets other users in (expected 700)"
    else:
        return path
    raise PermissionError(f"dataDir: the default data directory {path} {why}, so another user could read or replace the "
                          "training data; remove it, or set dataDir (or the Spark conf spark.sparkneural.dataDir) to a directory of your own")


@contextlib.contextmanager
def materialize(df, featuresCol: str, labelCol: str | None = None, validation=None, data_dir: str | None = None,
                row_group_bytes: int = ROW_GROUP_BYTES) -> Iterator[ParquetData]:
    """Write the training columns of ``df`` to Parquet; delete them when the block ends.

    ``validation`` is None, a column name (boolean or 0/1: true marks a
    validation row) or a Spark Column. The files go to a new directory
    (``sparkneural-<random>``) under ``data_dir`` (default: the Spark conf
    ``spark.sparkneural.dataDir``, else ``petastorm.spark.converter.parentCacheDirUrl``,
    else a directory private to this user, ``private_data_dir``), one file per
    partition, written in one Spark job; only that new directory is deleted
    when the block exits, also when it exits with an error. Features (and
    array labels) are written as float32 arrays, a numeric label as float32,
    in row groups of about ``row_group_bytes`` decoded bytes.
    """
    from pyspark.sql import functions as F

    from sparkneural.data.schema import as_array

    columns = [as_array(df, featuresCol).cast("array<float>").alias(FEATURES)]
    if labelCol is not None:
        label = as_array(df, labelCol).cast("array<float>") if _is_array_like(df, labelCol) else F.col(labelCol).cast("float")
        columns.append(label.alias(LABEL))
    if validation is not None:
        flag = F.col(validation) if isinstance(validation, str) else validation
        columns.append(flag.cast("boolean").alias(IS_VALIDATION))
    name = f"sparkneural-{uuid.uuid4().hex}"
    root = join(data_dir_url(df.sparkSession, data_dir), name)
    fs, path = open_filesystem(root)
    try:
        written = df.select(*columns).mapInArrow(_partition_writer(root, row_group_bytes), WRITTEN_SCHEMA).collect()
        files = sorted(written, key=lambda r: r["file"])
        yield ParquetData(
            root=root,
            files=tuple(DataFile(r["file"], tuple(r["rows"]), tuple(r["validationRows"])) for r in files),
            has_label=labelCol is not None,
            has_validation=validation is not None,
            rowBytes=max((r["rowBytes"] for r in files), default=0),
        )
    finally:
        _delete(fs, path, name)


def _partition_writer(root: str, group_bytes: int):
    """The function each Spark task runs: its rows to ``<root>/part-<partition>-<task attempt>.parquet``, one summary row out."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        # The task attempt id is unique in the application, so a retried stage never overwrites a file.
        name = f"part-{context.partitionId():05d}-{context.taskAttemptId()}.parquet"
        batches = (b for b in batches if b.num_rows)
        first = next(batches, None)
        if first is None:
            return  # an empty partition writes no file
        # Parquet's writer splits larger groups (pyarrow >= 15: 1Mi rows) and the summary counts one per write.
        group_rows = min(MAX_GROUP_ROWS, max(1, group_bytes * first.num_rows // max(1, first.nbytes)))
        fs, directory = open_filesystem(root)
        fs.create_dir(directory, recursive=True)
        rows, validation_rows = [], []
        with fs.open_output_stream(f"{directory}/{name}") as sink, pq.ParquetWriter(sink, first.schema, compression="none") as writer:

            def write_group(table: pa.Table) -> None:
                writer.write_table(table, row_group_size=table.num_rows)
                rows.append(table.num_rows)
                validation_rows.append(int(pc.sum(table[IS_VALIDATION]).as_py() or 0) if IS_VALIDATION in table.column_names else 0)

            pending: list[pa.RecordBatch] = []
            for batch in itertools.chain([first], batches):
                pending.append(batch)
                while sum(b.num_rows for b in pending) >= group_rows:
                    table = pa.Table.from_batches(pending)
                    write_group(table.slice(0, group_rows))
                    pending = table.slice(group_rows).to_batches()
            if pending:
                write_group(pa.Table.from_batches(pending, schema=first.schema))
        row_bytes = -(-first.nbytes // first.num_rows)
        yield pa.RecordBatch.from_pylist([{"file": name, "rows": rows, "validationRows": validation_rows, "rowBytes": row_bytes}])

    return write


def is_fit_directory(path: str, name: str) -> bool:
    """Whether ``path`` ends in ``name`` and ``name`` is a fit's own ``sparkneural-<32 hex digits>``: the only directory a fit deletes."""
    return FIT_DIRECTORY.fullmatch(name) is not None and posixpath.basename(path.rstrip("/")) == name


def _delete(fs, path: str, name: str) -> None:
    """Delete the fit's directory ``name`` at ``path``; a refusal or a failure warns rather than hiding the fit's own outcome."""
    if not is_fit_directory(path, name):
        warnings.warn(f"sparkneural did not delete {redacted(path)}: it is not the directory {name} that the fit created", stacklevel=3)
        return
    try:
        fs.delete_dir(path)
    except FileNotFoundError:  # the write failed before creating anything
        pass
    except OSError as err:
        warnings.warn(f"sparkneural could not delete its training data at {redacted(path)}: {redacted(str(err))}", stacklevel=3)


def open_parquet(url: str) -> pq.ParquetFile:
    """A Parquet file on any file system pyarrow reaches (a plain path or a URL)."""
    fs, path = open_filesystem(url)
    return pq.ParquetFile(fs.open_input_file(path))


def _is_array_like(df, column: str) -> bool:
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    return isinstance(df.schema[column].dataType, (T.ArrayType, VectorUDT))


def petastorm_error() -> str | None:
    """Why petastorm's reader cannot be used here, or None when it imports."""
    try:
        import petastorm.reader  # noqa: F401
    except Exception as err:  # petastorm 0.13 imports modules that pyarrow 16 removed
        return f"{type(err).__name__}: {err}"
    return None
