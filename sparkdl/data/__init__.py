"""DataFrame -> torch: schema checks, Parquet materialisation, per-rank shards."""

from sparkdl.data.materialize import ParquetData, materialize, read_shard

__all__ = ["ParquetData", "materialize", "read_shard"]
