"""DataFrame -> torch: schema checks, Parquet materialisation on any file system, per-rank shards (kept or streamed); WAV audio.

The shard readers (which need torch) and the WAV functions are imported on
first use: Spark's Python workers import this package to write the training
data, and the preprocessing stages to check their input, without torch.
"""

from sparkneural.data.materialize import ParquetData, materialize

__all__ = ["ParquetData", "materialize", "open_shard", "read_shard", "read_wav", "write_wav"]


def __getattr__(name: str):
    if name in ("read_wav", "write_wav"):
        from sparkneural.data import audio

        return getattr(audio, name)
    if name in ("open_shard", "read_shard"):
        from sparkneural.data import shards

        return getattr(shards, name)
    raise AttributeError(f"module 'sparkneural.data' has no attribute {name!r}")
