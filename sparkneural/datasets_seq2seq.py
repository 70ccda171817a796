"""Synthetic sequence-to-sequence tasks over characters, generated here (no download).

- ``reverse_digits``: "40712" -> "21704".
- ``dates_to_iso``: a written date in one of several styles -> "YYYY-MM-DD":
  "march 5 2021", "5 march 2021", "mar 5, 2021", "5 mar 2021",
  "march 5, 2021", "05/03/21" and "5.3.2021". Numeric styles are day first;
  a two-digit year yy means 19yy when yy >= 70, else 20yy (dates run from
  1970-01-01 to 2069-12-31, so that reading is exact).

A task returns rows of (sourceText, targetText), the same for the same seed.
A ``Vocabulary`` turns text into ids: 0 pad, 1 start, 2 end, then one id per
character from 3. Encoded targets end with endId (2); sources do not.
``as_dataframe`` gives the Spark DataFrame an estimator reads; ``flat_input``
in ``sparkneural.nn.seq2seq`` gives the layout the "seq2seq" network reads.
"""

from __future__ import annotations

import datetime
import random
import string
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # Spark is needed for as_dataframe only
    from pyspark.sql import DataFrame, SparkSession

PAD_ID, START_ID, END_ID = 0, 1, 2
MONTHS = ("january", "february", "march", "april", "may", "june", "july",
          "august", "september", "october", "november", "december")


class Vocabulary:
    """Character ids: 0 pad, 1 start, 2 end, then ``characters`` in order from 3.

    >>> vocabulary = Vocabulary("0123456789")
    >>> vocabulary.encode("407", end=True)
    [7, 3, 10, 2]
    >>> vocabulary.decode([7, 3, 10, 2, 0, 0])
    '407'
    >>> len(vocabulary)
    13
    """

    def __init__(self, characters: str):
        if len(set(characters)) != len(characters):
            raise ValueError(f"characters: expected no repeats, found {characters!r}")
        self.characters = characters
        self.ids = {c: i + 3 for i, c in enumerate(characters)}

    def __len__(self) -> int:
        return len(self.characters) + 3

    def encode(self, text: str, end: bool = False) -> list[int]:
        """The ids of ``text``, with endId appended when ``end``."""
        try:
            ids = [self.ids[c] for c in text]
        except KeyError as err:
            raise ValueError(f"text: expected characters from {self.characters!r}, found {err.args[0]!r}") from None
        return ids + [END_ID] if end else ids

    def decode(self, ids: Iterable[int | float]) -> str:
        """The text of ``ids`` up to the first endId; pad and start ids are skipped."""
        characters = []
        for i in ids:
            i = int(i)
            if i == END_ID:
                break
            if i >= 3:
                characters.append(self.characters[i - 3])
        return "".join(characters)


DIGITS = Vocabulary(string.digits)
# covers both tasks, so one network can be trained on either
CHARACTERS = Vocabulary(string.digits + string.ascii_lowercase + " /-.,")


def reverse_digits(n: int, minLength: int = 3, maxLength: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` random digit strings of ``minLength``..``maxLength`` digits and their reversals.

    >>> reverse_digits(2, seed=1)
    [('9141', '1419'), ('776317', '713677')]
    """
    if not 1 <= minLength <= maxLength:
        raise ValueError(f"minLength, maxLength: expected 1 <= minLength <= maxLength, found {minLength}, {maxLength}")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text = "".join(rng.choice(string.digits) for _ in range(rng.randint(minLength, maxLength)))
        rows.append((text, text[::-1]))
    return rows


def _written(date: datetime.date, style: int) -> str:
    month, short = MONTHS[date.month - 1], MONTHS[date.month - 1][:3]
    d, m, y = date.day, date.month, date.year
    return (
        f"{month} {d} {y}",
        f"{d} {month} {y}",
        f"{short} {d}, {y}",
        f"{d} {short} {y}",
        f"{month} {d}, {y}",
        f"{d:02d}/{m:02d}/{y % 100:02d}",
        f"{d}.{m}.{y}",
    )[style]


DATE_STYLES = 7
_FIRST, _LAST = datetime.date(1970, 1, 1).toordinal(), datetime.date(2069, 12, 31).toordinal()


def dates_to_iso(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` random dates written in a random style, with their ISO form as the target.

    >>> dates_to_iso(2, seed=3)
    [('september 12, 2012', '2012-09-12'), ('26 august 2067', '2067-08-26')]
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        date = datetime.date.fromordinal(rng.randint(_FIRST, _LAST))
        rows.append((_written(date, rng.randrange(DATE_STYLES)), date.isoformat()))
    return rows


def encode_rows(
    rows: Sequence[tuple[str, str]], vocabulary: Vocabulary = CHARACTERS
) -> tuple[list[list[int]], list[list[int]]]:
    """(source ids, target ids ending with endId) for each row."""
    return [vocabulary.encode(s) for s, _ in rows], [vocabulary.encode(t, end=True) for _, t in rows]


def as_dataframe(
    spark: "SparkSession", rows: Sequence[tuple[str, str]], vocabulary: Vocabulary = CHARACTERS, numPartitions: int = 2
) -> "DataFrame":
    """Columns ``source`` (array<int>), ``target`` (array<int>, ending with endId), ``sourceText``, ``targetText``.

    >>> df = as_dataframe(spark, reverse_digits(1000, seed=0), DIGITS)
    >>> df.columns
    ['source', 'target', 'sourceText', 'targetText']
    """
    from pyspark.sql import types as T

    sources, targets = encode_rows(rows, vocabulary)
    data = [(s, t, st, tt) for s, t, (st, tt) in zip(sources, targets, rows)]
    schema = T.StructType(
        [
            T.StructField("source", T.ArrayType(T.IntegerType(), False), False),
            T.StructField("target", T.ArrayType(T.IntegerType(), False), False),
            T.StructField("sourceText", T.StringType(), False),
            T.StructField("targetText", T.StringType(), False),
        ]
    )
    # a local relation, not an RDD: building it needs no Python workers, which is much faster
    return spark.createDataFrame(data, schema).repartition(numPartitions)
