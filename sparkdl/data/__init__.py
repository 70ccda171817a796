"""DataFrame -> torch: schema checks, Parquet materialisation on any file system, per-rank shards (kept or streamed); WAV audio.

The WAV functions are imported on first use: the training ranks import this
package for ``materialize`` and need neither pandas nor Spark SQL.
"""

from sparkdl.data.materialize import ParquetData, materialize
from sparkdl.data.shards import open_shard, read_shard

__all__ = ["ParquetData", "materialize", "open_shard", "read_shard", "read_wav", "write_wav"]


def __getattr__(name: str):
    if name in ("read_wav", "write_wav"):
        from sparkdl.data import audio

        return getattr(audio, name)
    raise AttributeError(f"module 'sparkdl.data' has no attribute {name!r}")
