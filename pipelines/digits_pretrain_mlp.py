"""Greedy layer-wise pre-training: an MLP initialised from stacked autoencoders vs from scratch, on few labels.

    sparkneural run digits_pretrain_mlp --conf conf/digits_pretrain_mlp.yaml

The recipe, on the digits with only ``labelled`` labelled rows:

1. Train an autoencoder on every image, labels unused (pixels -> hidden 1).
2. Train a second autoencoder on the first one's codes (hidden 1 -> hidden 2).
3. Initialise an MLP with hidden layers [hidden 1, hidden 2] from the two
   encoders (``initFrom=[first, second]``, ``initFromMatch="order"``:
   each encoder fills the next layer), then train it on the labelled rows:
   the head alone for ``headEpochs`` (``freeze`` + ``unfreezeAfterEpochs``),
   then everything at ``unfrozenLearningRate``.

The same MLP trained from scratch on the same labelled rows is the
baseline; both are scored on held-out rows, over several seeds.
"""

from __future__ import annotations

import os
from typing import Any

from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sparkneural.estimators import Autoencoder, MLPClassifier

DEFAULTS: dict[str, Any] = {
    "spark": {"master": "local[2]", "appName": "sparkneural-digits-pretrain", "conf": {}, "logLevel": "ERROR"},
    "labelled": 100,
    "testFraction": 0.25,
    "hiddenLayers": [64, 32],
    "autoencoder": {"epochs": 40, "batchSize": 32, "learningRate": 0.001, "numProc": 2, "backend": "horovod"},
    "classifier": {"epochs": 100, "batchSize": 16, "learningRate": 0.001, "numProc": 1, "backend": "local"},
    "headEpochs": 20,
    "unfrozenLearningRate": 0.001,
    "seeds": [0, 1, 2],
    "output": "output/digits_pretrain_mlp",
}
PARAMS = {"autoencoder": Autoencoder, "classifier": MLPClassifier}


def main(spark: SparkSession, conf: dict[str, Any]) -> dict[str, Any]:
    from sparkneural import plots
    from sparkneural.datasets import digits

    output = conf["output"] or os.path.join("output", "digits_pretrain_mlp")
    images = digits(spark).selectExpr("transform(features, v -> v / 16.0) AS features", "label").cache()
    held_out = F.expr("pmod(xxhash64(features), 1000)") < int(1000 * conf["testFraction"])
    test, pool = images.where(held_out).cache(), images.where(~held_out)
    labelled = pool.orderBy(F.xxhash64("features", F.lit("labelled"))).limit(conf["labelled"]).cache()

    first_width, second_width = conf["hiddenLayers"]
    encoders = [os.path.join(output, "autoencoder1"), os.path.join(output, "autoencoder2")]
    first = Autoencoder(kind="dense", bottleneck=first_width, verbose=0, **conf["autoencoder"]).fit(images)
    first.write().overwrite().save(encoders[0])
    codes = first.transform(images).select(F.col(first.getEmbeddingCol()).alias("features"))
    second = Autoencoder(kind="dense", bottleneck=second_width, outputActivation="linear", verbose=0,
                         **conf["autoencoder"]).fit(codes)
    second.write().overwrite().save(encoders[1])

    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    pretrained = dict(initFrom=encoders, initFromMatch="order", initFromPrefixes=["encoder.", "code."],
                      freeze=["features."], unfreezeAfterEpochs=conf["headEpochs"],
                      unfrozenLearningRate=conf["unfrozenLearningRate"])
    scores: dict[str, list[float]] = {"scratch": [], "pretrained": []}
    for seed in conf["seeds"]:
        for name, extra in (("scratch", {}), ("pretrained", pretrained)):
            model = MLPClassifier(hiddenLayers=conf["hiddenLayers"], seed=seed, verbose=0, **conf["classifier"], **extra).fit(labelled)
            scores[name].append(evaluator.evaluate(model.transform(test)))
    means = {name: sum(values) / len(values) for name, values in scores.items()}
    print(f"{conf['labelled']} labelled digits, {test.count()} test rows, mean of {len(conf['seeds'])} seeds: "
          f"from scratch {means['scratch']:.3f}, pre-trained layer-wise {means['pretrained']:.3f}")
    plots.strategy_bars({"from scratch": means["scratch"], "autoencoder pre-trained": means["pretrained"]},
                        os.path.join(output, "pretraining.png"))
    return {"labelled": conf["labelled"], "accuracy_scratch": means["scratch"], "accuracy_pretrained": means["pretrained"],
            "per_seed": scores, "autoencoder_loss": [first.history[-1]["loss"], second.history[-1]["loss"]]}


if __name__ == "__main__":
    from sparkneural.runner import main_entry

    main_entry(__name__)
