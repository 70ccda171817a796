"""WAV files <-> Spark: read a file or a directory of them into one row per file, write one.

``read_wav`` reads the bytes through Spark's ``binaryFile`` source and decodes
them with Python's ``wave`` module in ``mapInPandas`` on the executors; the
driver only sees the names of files that fail to decode. Samples are integer
PCM scaled to [-1, 1] (16-bit: int16 / 32768), mixed down to mono and
optionally resampled.
"""

from __future__ import annotations

import io
import math
import os
import wave
from typing import Iterator, Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

AUDIO_SCHEMA = "path string, sampleRate int, numSamples int, samples array<float>"
_CHECK_SCHEMA = "path string, error string"
_FORMAT_NAMES = {3: "IEEE float", 6: "A-law", 7: "mu-law", 65534: "WAVE_FORMAT_EXTENSIBLE"}
_SHOWN_ERRORS = 5


class WavFormatError(ValueError):
    """A WAV file this reader cannot decode (not integer PCM, or corrupt)."""


def read_wav(spark: SparkSession, path: str, sampleRate: int | None = None) -> DataFrame:
    """Read a WAV file, or every ``*.wav`` under a directory, into one row per file.

    Columns: ``path`` (the file's URI), ``sampleRate`` (int), ``numSamples``
    (int) and ``samples`` (array<float> in [-1, 1]). 8/16/24/32-bit integer
    PCM is read, scaled by its full range (16-bit: int16 / 32768); several
    channels are averaged to mono. With ``sampleRate`` set, files at another
    rate are resampled to it (``scipy.signal.resample_poly`` when scipy is
    installed, linear interpolation otherwise) to ceil(n * sampleRate / rate)
    samples, clipped to [-1, 1].

    The headers are checked by one Spark job before this returns: files that
    are not integer PCM (e.g. a float WAV, format code 3), are corrupt or are
    empty raise a ``ValueError`` naming them. The decoding itself is lazy.

    >>> audio = read_wav(spark, "data/audio", sampleRate=16000)
    >>> audio.select("path", "numSamples").show()
    """
    if sampleRate is not None and int(sampleRate) <= 0:
        raise ValueError(f"read_wav: sampleRate must be > 0, found {sampleRate}")
    files = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.[wW][aA][vV]")
        .option("recursiveFileLookup", "true")
        .load(path)
        .select("path", "content")
    )
    _check_files(files, path)
    rate = None if sampleRate is None else int(sampleRate)

    def decode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return _decode_batches(batches, rate)

    return files.mapInPandas(decode, AUDIO_SCHEMA)


def write_wav(samples: np.ndarray, path: str | os.PathLike, sampleRate: int) -> None:
    """Write float samples in [-1, 1] as a 16-bit PCM WAV file (values outside are clipped).

    ``samples`` has shape (n,) for mono or (n, channels). Each value becomes
    round(x * 32768) clipped to the int16 range, so ``read_wav`` gives it back
    within 1/32768.

    >>> write_wav(np.sin(np.arange(16000) * 0.05), "/tmp/tone.wav", sampleRate=16000)
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"write_wav: samples must have shape (n,) or (n, channels), found {np.shape(samples)}")
    if not np.isfinite(x).all():
        raise ValueError("write_wav: samples contain NaN or infinity")
    if int(sampleRate) <= 0:
        raise ValueError(f"write_wav: sampleRate must be > 0, found {sampleRate}")
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(x.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(sampleRate))
        out.writeframes(pcm.tobytes())


def _check_files(files: DataFrame, path: str) -> None:
    """One job: count the files and gather the decoding errors, then raise on the driver."""
    checked = files.mapInPandas(_check_batches, _CHECK_SCHEMA)
    summary = checked.agg(
        F.count("*").alias("files"),
        F.collect_list(F.when(F.col("error").isNotNull(), F.concat_ws(": ", "path", "error"))).alias("errors"),
    ).first()
    listed = files.inputFiles()
    # Spark's file sources skip files of zero bytes without a word; the listing still holds them.
    empty = _unread(files, listed) if summary["files"] < len(listed) else []
    if summary["files"] == 0 and not empty:
        raise ValueError(f"read_wav: no .wav files found at {path!r}")
    errors = summary["errors"] + [f"{file}: empty file (0 bytes)" for file in empty]
    if errors:
        shown = "\n  ".join(sorted(errors)[:_SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - _SHOWN_ERRORS} more" if len(errors) > _SHOWN_ERRORS else ""
        raise ValueError(f"read_wav: {len(errors)} file(s) cannot be read as integer PCM WAV:\n  {shown}{more}")


def _unread(files: DataFrame, listed: Sequence[str]) -> list[str]:
    """The files of ``listed`` (URIs) that ``files`` has no row for, named as its ``path`` column names files."""
    read = {_file_uri(row["path"]) for row in files.select("path").collect()}
    return [_file_uri(file) for file in listed if _file_uri(file) not in read]


def _file_uri(uri: str) -> str:
    """``uri`` as Hadoop's ``Path.toString`` writes it: ``file:/a b/c`` (not ``file:///a%20b/c``) for a local
    file, others unchanged."""
    parsed = urlparse(uri)
    return f"file:{unquote(parsed.path)}" if parsed.scheme == "file" and not parsed.netloc else uri


def _check_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        errors = []
        for content in batch["content"]:
            try:
                _decode(content, check_only=True)
                errors.append(None)
            except WavFormatError as error:
                errors.append(str(error))
        yield pd.DataFrame({"path": batch["path"], "error": errors})


def _decode_batches(batches: Iterator[pd.DataFrame], sample_rate: int | None) -> Iterator[pd.DataFrame]:
    # One output frame per file keeps at most one decoded file in memory.
    for batch in batches:
        for path, content in zip(batch["path"], batch["content"]):
            try:
                rate, samples = _decode(content)
            except WavFormatError as error:
                raise ValueError(f"read_wav: {path}: {error}") from None
            if sample_rate is not None and sample_rate != rate:
                samples, rate = _resample(samples, rate, sample_rate), sample_rate
            yield pd.DataFrame(
                {"path": [path], "sampleRate": [rate], "numSamples": [len(samples)], "samples": [samples]}
            )


def _decode(content: bytes, check_only: bool = False) -> tuple[int, np.ndarray]:
    """(sample rate, mono float32 samples in [-1, 1]) of a WAV file's bytes; WavFormatError if unreadable."""
    try:
        with wave.open(io.BytesIO(bytes(content))) as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.getnframes()
            data = wav.readframes(frames)
    except wave.Error as error:
        raise WavFormatError(_describe(error)) from None
    except (EOFError, ValueError, OSError) as error:  # wave's reactions to truncated or garbled headers
        raise WavFormatError(f"corrupt WAV header ({type(error).__name__}: {error})") from None
    if channels < 1 or width not in (1, 2, 3, 4) or rate <= 0:
        raise WavFormatError(f"unsupported WAV: {channels} channel(s), {8 * width}-bit, {rate} Hz")
    if len(data) != frames * channels * width:
        raise WavFormatError(f"truncated data: the header announces {frames} frames, the file holds {len(data) // (channels * width)}")
    if check_only:
        return rate, np.empty(0, dtype=np.float32)
    pcm = _pcm_to_float(data, width)
    mono = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm
    return rate, mono.astype(np.float32)


def _pcm_to_float(data: bytes, width: int) -> np.ndarray:
    """Integer PCM bytes (little endian; 8-bit unsigned, wider signed) scaled by the full range."""
    if width == 1:
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float64) / float(1 << 23)
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(data, dtype=dtype).astype(np.float64) / float(1 << (8 * width - 1))


def _describe(error: wave.Error) -> str:
    message = str(error)
    if message.startswith("unknown format:"):
        code = int(message.split(":")[1])
        name = _FORMAT_NAMES.get(code, "unknown")
        return f"format code {code} ({name}) is not integer PCM (code 1); convert it to 16-bit PCM"
    return f"not a readable WAV file ({message})"


def _resample(samples: np.ndarray, source: int, target: int) -> np.ndarray:
    """Resample to ``target`` Hz: ceil(n * target / source) samples, clipped to [-1, 1]."""
    n_out = -(-len(samples) * target // source)
    if len(samples) == 0:
        return np.empty(0, dtype=np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError:
        resample_poly = None
    if resample_poly is not None:
        divisor = math.gcd(source, target)
        out = resample_poly(samples.astype(np.float64), target // divisor, source // divisor)[:n_out]
    else:
        out = np.interp(np.arange(n_out) * (source / target), np.arange(len(samples)), samples)
    # The anti-aliasing filter can ring slightly past full scale.
    return np.clip(out, -1.0, 1.0).astype(np.float32)
