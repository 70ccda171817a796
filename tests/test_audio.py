"""read_wav / write_wav: round trips, mixdown, resampling and clear errors for unreadable files."""

import math
import os
import struct
import wave

import numpy as np
import pytest
from pyspark.sql import types as T

from sparkneural.data import read_wav, write_wav

ROOT = os.path.join(os.path.dirname(__file__), "..")


def float_wav(path, samples, rate=16000):
    """A 32-bit IEEE float WAV (format code 3), which Python's wave module cannot write."""
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def rows_by_name(df):
    return {os.path.basename(r["path"]): r for r in df.collect()}


def test_write_then_read_round_trips_within_one_step(spark, tmp_path):
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.uniform(-1, 1, 5000), [-1.0, 1.0, 0.0, 1.7, -2.0]])
    write_wav(samples, tmp_path / "noise.wav", 16000)
    df = read_wav(spark, str(tmp_path / "noise.wav"))
    assert df.schema["samples"].dataType == T.ArrayType(T.FloatType())
    assert isinstance(df.schema["sampleRate"].dataType, T.IntegerType)
    row = df.first()
    assert row["path"].endswith("noise.wav") and (row["sampleRate"], row["numSamples"]) == (16000, len(samples))
    read = np.array(row["samples"], dtype=np.float64)
    assert np.all(np.abs(read - np.clip(samples, -1, 1)) <= 1 / 32768)
    assert read.min() >= -1 and read.max() <= 1


def test_pcm_is_scaled_by_32768(spark, tmp_path):
    pcm = np.array([-32768, -1, 0, 1, 16384, 32767], dtype="<i2")
    with wave.open(str(tmp_path / "exact.wav"), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(pcm.tobytes())
    assert read_wav(spark, str(tmp_path / "exact.wav")).first()["samples"] == (pcm / 32768).tolist()


def test_stereo_is_mixed_down_to_the_mean_of_the_channels(spark, tmp_path):
    t = np.arange(4000) / 8000
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.cos(2 * np.pi * 220 * t)
    write_wav(np.stack([left, right], axis=1), tmp_path / "stereo.wav", 8000)
    with wave.open(str(tmp_path / "stereo.wav")) as check:
        assert check.getnchannels() == 2
    row = read_wav(spark, str(tmp_path / "stereo.wav")).first()
    assert row["numSamples"] == len(t)
    assert np.max(np.abs(np.array(row["samples"]) - (left + right) / 2)) <= 1 / 32768


def test_a_directory_gives_one_row_per_wav_file(spark, tmp_path):
    for i, n in enumerate([100, 250, 30]):
        write_wav(np.full(n, 0.25 * i), tmp_path / "clips" / f"clip{i}.wav", 16000)
    (tmp_path / "clips" / "notes.txt").write_text("not audio")
    rows = rows_by_name(read_wav(spark, str(tmp_path / "clips")))
    assert {name: r["numSamples"] for name, r in rows.items()} == {"clip0.wav": 100, "clip1.wav": 250, "clip2.wav": 30}
    assert rows["clip2.wav"]["samples"][0] == 0.5


@pytest.mark.parametrize("source, target", [(16000, 8000), (22050, 16000), (8000, 16000), (16000, 16000)])
def test_resampling_sets_the_rate_and_length_and_keeps_the_pitch(spark, tmp_path, source, target):
    n = 3001
    tone = 0.5 * np.sin(2 * np.pi * 300 * np.arange(n) / source)
    write_wav(tone, tmp_path / "tone.wav", source)
    row = read_wav(spark, str(tmp_path / "tone.wav"), sampleRate=target).first()
    expected_length = math.ceil(n * target / source)
    assert (row["sampleRate"], row["numSamples"]) == (target, expected_length)
    # Away from the edges the resampled signal is the same 300 Hz tone at the new rate.
    middle = slice(expected_length // 4, 3 * expected_length // 4)
    expected = 0.5 * np.sin(2 * np.pi * 300 * np.arange(expected_length) / target)
    assert np.max(np.abs(np.array(row["samples"])[middle] - expected[middle])) < 0.02


def test_a_float_wav_raises_naming_the_file(spark, tmp_path):
    write_wav(np.zeros(10), tmp_path / "good.wav", 16000)
    float_wav(tmp_path / "float32.wav", np.zeros(10))
    with pytest.raises(ValueError, match=r"1 file\(s\)[\s\S]*float32\.wav: format code 3 \(IEEE float\)") as raised:
        read_wav(spark, str(tmp_path))
    assert "good.wav" not in str(raised.value)


def test_corrupt_and_truncated_files_raise_naming_them(spark, tmp_path):
    (tmp_path / "garbage.wav").write_bytes(b"this is not a RIFF file at all")
    write_wav(np.linspace(-1, 1, 1000), tmp_path / "cut.wav", 16000)
    full = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) - 500])
    with pytest.raises(ValueError) as raised:
        read_wav(spark, str(tmp_path))
    message = str(raised.value)
    assert "2 file(s)" in message and "garbage.wav" in message and "cut.wav: truncated data" in message


def test_no_wav_files_and_bad_arguments_raise(spark, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .wav files"):
        read_wav(spark, str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="sampleRate must be > 0"):
        read_wav(spark, str(tmp_path / "empty"), sampleRate=0)
    with pytest.raises(ValueError, match="shape"):
        write_wav(np.zeros((2, 2, 2)), tmp_path / "x.wav", 16000)
    with pytest.raises(ValueError, match="NaN"):
        write_wav(np.array([0.0, np.nan]), tmp_path / "x.wav", 16000)


def test_the_project_audio_sample_reads_as_four_seconds_at_16khz(spark):
    path = os.path.join(ROOT, "data", "audio", "tones.wav")
    assert os.path.getsize(path) < 1_000_000
    row = read_wav(spark, path).first()
    assert (row["sampleRate"], row["numSamples"]) == (16000, 64000)
    samples = np.array(row["samples"])
    assert 0.1 < samples.std() and np.abs(samples).max() <= 1.0
    # The phrase repeats every second: the signal is predictable, not noise.
    assert np.corrcoef(samples[:16000], samples[16000:32000])[0, 1] > 0.9
