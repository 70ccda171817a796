"""Text features for Spark pipelines: BERT-like encoders as Spark Transformers.

>>> from sparkdl.text import BertEmbeddings
>>> BertEmbeddings(modelPath="/models/minilm", pooling="cls").transform(df)
"""

__all__ = ["BertEmbeddings"]


def __getattr__(name: str):
    if name == "BertEmbeddings":  # imported on first use: sparkdl.text.encoder runs where Spark is not installed
        from sparkdl.text.bert import BertEmbeddings

        return BertEmbeddings
    raise AttributeError(f"module 'sparkdl.text' has no attribute {name!r}")
