"""Write data/audio/tones.wav: a short, deterministic melody for the audio examples and tests.

Four seconds at 16 kHz, 16-bit PCM mono (128 kB): a repeating eight-note
phrase of harmonic tones (fundamental plus decaying overtones) with attack /
decay envelopes, a little vibrato and quiet noise from a fixed seed. The
phrase repeats, so a causal model (WaveNet) can learn to predict the next
sample far better than from the class frequencies alone.

    python scripts/make_audio_sample.py [--out data/audio/tones.wav] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sparkneural.data.audio import write_wav  # noqa: E402

SAMPLE_RATE = 16_000
# A minor pentatonic phrase (MIDI note numbers) and each note's length in beats.
PHRASE = [(57, 1), (60, 1), (62, 1), (64, 1), (67, 2), (64, 1), (62, 1)]
BEAT_SECONDS = 0.125
HARMONICS = [1.0, 0.5, 0.3, 0.15, 0.08]
SEED = 1234


def note(midi: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One harmonic tone with a fast attack, exponential decay and slight vibrato."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 440.0 * 2.0 ** ((midi - 69) / 12)
    phase = 2 * np.pi * f0 * t + 0.02 * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi))
    tone = sum(a * np.sin(k * phase) for k, a in enumerate(HARMONICS, start=1)) / sum(HARMONICS)
    attack = np.minimum(t / 0.01, 1.0)
    release = np.minimum((seconds - t) / 0.01, 1.0)
    return tone * attack * release * np.exp(-3.0 * t)


def melody(seconds: float, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phrase = np.concatenate([note(m, beats * BEAT_SECONDS, rng) for m, beats in PHRASE])
    repeats = int(np.ceil(seconds * SAMPLE_RATE / len(phrase)))
    audio = np.tile(phrase, repeats)[: int(seconds * SAMPLE_RATE)]
    audio = 0.6 * audio + 0.003 * rng.standard_normal(len(audio))
    return np.clip(audio, -1.0, 1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    parser.add_argument("--out", default=os.path.join(root, "data", "audio", "tones.wav"))
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    audio = melody(args.seconds)
    write_wav(audio, args.out, SAMPLE_RATE)
    print(f"wrote {os.path.normpath(args.out)}: {len(audio)} samples at {SAMPLE_RATE} Hz")


if __name__ == "__main__":
    main()
