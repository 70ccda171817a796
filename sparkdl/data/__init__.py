"""DataFrame -> torch: schema checks, Parquet materialisation, per-rank shards; WAV audio."""

from sparkdl.data.audio import read_wav, write_wav
from sparkdl.data.materialize import ParquetData, materialize, read_shard

__all__ = ["ParquetData", "materialize", "read_shard", "read_wav", "write_wav"]
