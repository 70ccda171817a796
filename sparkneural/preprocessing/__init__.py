"""Spark Transformers that prepare data for the models (no torch here): mu-law coding, windowing."""

from sparkneural.preprocessing.mulaw import MuLawDecoder, MuLawEncoder
from sparkneural.preprocessing.windowing import SequenceWindower

__all__ = ["MuLawDecoder", "MuLawEncoder", "SequenceWindower"]
