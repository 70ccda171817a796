"""Text features for Spark pipelines: BERT-like encoders as Spark Transformers.

>>> from sparkneural.text import BertEmbeddings
>>> BertEmbeddings(modelPath="/models/minilm", pooling="cls").transform(df)
"""

__all__ = ["BertEmbeddings"]


def __getattr__(name: str):
    if name == "BertEmbeddings":  # imported on first use: sparkneural.text.encoder runs where Spark is not installed
        from sparkneural.text.bert import BertEmbeddings

        return BertEmbeddings
    raise AttributeError(f"module 'sparkneural.text' has no attribute {name!r}")
