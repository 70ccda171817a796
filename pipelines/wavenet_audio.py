"""WaveNet on audio: read WAV -> mu-law -> windows -> train with Horovod -> generate -> write WAV.

    sparkneural run wavenet_audio --conf conf/wavenet_audio.yaml

Trains on the first part of every file and scores the rest: the test
negative log-likelihood per sample (nats) beside that of a model that
predicts the training class frequencies. Then generates new audio with the
fast (queued) generator and writes it as WAV, with a waveform/spectrogram
plot and the generation speed of the fast and the naive generator.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sparkneural.estimators import WaveNet

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-wavenet-audio", "conf": {}, "logLevel": "ERROR"},
    "data": {"path": "data/audio", "sampleRate": 16000, "trainFraction": 0.8},
    "window": {"windowSize": 512, "step": 256},
    "model": {"layersPerBlock": 8, "blocks": 1, "residualChannels": 32, "dilationChannels": 32, "skipChannels": 64,
              "epochs": 15, "batchSize": 8, "learningRate": 0.003, "numProc": 2, "backend": "horovod"},
    "generate": {"seconds": 1.0, "mode": "temperature", "temperature": 0.9, "topK": None, "seed": 0, "naiveSamples": 300},
    "seed": 1,
    "output": "output/wavenet_audio",
}
PARAMS = {"model": WaveNet}


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from sparkneural import plots
    from sparkneural.data import read_wav, write_wav
    from sparkneural.preprocessing import MuLawEncoder, SequenceWindower

    data, window = conf["data"], conf["window"]
    audio = read_wav(spark, data["path"], sampleRate=data["sampleRate"])
    classes = MuLawEncoder(inputCol="samples", outputCol="classes").transform(audio)
    rows = SequenceWindower(inputCol="classes", seriesCol="path", **window).transform(classes)
    rows = rows.join(audio.select("path", "numSamples"), "path")
    cut = F.col("numSamples") * data["trainFraction"]
    train = rows.where(F.col("windowStart") + window["windowSize"] <= cut).drop("numSamples").cache()
    test = rows.where(F.col("windowStart") >= cut).drop("numSamples").cache()

    started = time.perf_counter()
    model = WaveNet(seed=conf["seed"], **conf["model"]).fit(train)
    train_seconds = time.perf_counter() - started
    scored = model.transform(test).agg(F.sum("logLikelihood").alias("ll"), F.count(F.lit(1)).alias("rows")).first()
    nll = -scored["ll"] / (scored["rows"] * (window["windowSize"] - 1))
    baseline = _class_frequency_nll(train, test)

    generate = conf["generate"]
    numSamples = int(generate["seconds"] * data["sampleRate"])
    started = time.perf_counter()
    samples = model.generate(numSamples, mode=generate["mode"], temperature=generate["temperature"],
                             topK=generate["topK"], seed=generate["seed"], fast=True)
    fast_rate = numSamples / (time.perf_counter() - started)
    started = time.perf_counter()
    model.generate(generate["naiveSamples"], mode=generate["mode"], temperature=generate["temperature"],
                   topK=generate["topK"], seed=generate["seed"], fast=False)
    naive_rate = generate["naiveSamples"] / (time.perf_counter() - started)
    print(f"WaveNet (receptive field {model.receptiveField}): test NLL {nll:.3f} nats/sample vs "
          f"class frequencies {baseline:.3f}; generation {fast_rate:.0f} samples/s fast vs {naive_rate:.0f} naive "
          f"({fast_rate / naive_rate:.0f}x)")
    if conf["output"]:
        output = conf["output"]
        write_wav(samples, os.path.join(output, "generated.wav"), data["sampleRate"])
        model.write().overwrite().save(os.path.join(output, "model"))
        plots.training_curves(model.history, os.path.join(output, "training_curves.png"), metrics=("loss", "accuracy"))
        plots.waveform_and_spectrogram(samples, data["sampleRate"], os.path.join(output, "generated.png"))
    return {
        "receptive_field": model.receptiveField, "test_nll": nll, "class_frequency_nll": baseline,
        "train_seconds": round(train_seconds, 2), "fast_samples_per_s": fast_rate, "naive_samples_per_s": naive_rate,
        "generated_samples": numSamples,
    }


def _class_frequency_nll(train, test) -> float:
    """NLL of predicting every next class from the training class frequencies (add-one smoothed)."""
    counts = train.select(F.explode("features").alias("c")).groupBy("c").count()
    total = train.select(F.sum(F.size("features"))).first()[0] + 256
    targets = test.select(F.explode(F.slice("features", 2, 1 << 30)).alias("c"))
    probability = (F.coalesce(F.col("count"), F.lit(0)) + 1) / total
    return targets.join(counts, "c", "left").agg(F.avg(-F.log(probability))).first()[0]


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
