"""Spark Transformers that prepare data for the models (no torch here): mu-law coding, windowing."""

from sparkdl.preprocessing.mulaw import MuLawDecoder, MuLawEncoder
from sparkdl.preprocessing.windowing import SequenceWindower

__all__ = ["MuLawDecoder", "MuLawEncoder", "SequenceWindower"]
