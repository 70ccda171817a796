"""Text features for Spark pipelines: BERT-like encoders as Spark Transformers.

>>> from sparkdl.text import BertEmbeddings
>>> BertEmbeddings(modelPath="/models/minilm", pooling="cls").transform(df)
"""

from sparkdl.text.bert import BertEmbeddings

__all__ = ["BertEmbeddings"]
