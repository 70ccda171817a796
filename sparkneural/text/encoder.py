"""The executor side of ``BertEmbeddings``: tokenize, run the encoder, pool.

Nothing here imports pyspark, so the same functions run where Spark is not
installed (``benchmarks/gpu.py`` times them on a bare GPU host).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sparkneural import devices

logger = logging.getLogger("sparkneural.text.bert")


class Encoder:
    """A tokenizer and a float32 model in eval mode on one device (one per Python worker), run in ``precision``."""

    def __init__(self, path: str, device: Any, precision: str = "32") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device, self.precision = torch.device(device), precision
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, output_hidden_states=True, local_files_only=True)
        self.model = model.to(device=device, dtype=torch.float32).eval()


def embed_texts(
    encoder: Encoder,
    texts: list[str],
    *,
    indices: list[int],
    combine: str,
    pooling: str,
    maxLength: int,
    batchSize: int,
) -> tuple[Any, list[list[str]] | None, int]:
    """Features of ``texts``: (features, tokens, number of truncated texts).

    Pooled: features is a float32 (texts, width) array and tokens None.
    ``pooling="none"``: features is a list of (tokens_i, width) arrays and
    tokens the word pieces of each text (special tokens included).
    """
    import torch

    if not texts:
        width = len(indices if combine == "concat" else [0]) * encoder.model.config.hidden_size
        return ([], [], 0) if pooling == "none" else (np.zeros((0, width), np.float32), None, 0)
    tokenizer = encoder.tokenizer
    encoded = tokenizer(texts, truncation=True, max_length=maxLength)
    ids = encoded["input_ids"]
    truncated = _count_truncated(tokenizer, texts, encoded, maxLength)
    if truncated:
        logger.warning("%d of %d texts were longer than maxLength=%d tokens and were truncated", truncated, len(texts), maxLength)
    names = [n for n in tokenizer.model_input_names if n in encoded and n != "attention_mask"]
    pad_values = {"input_ids": tokenizer.pad_token_id or 0}
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    # Longest first: similar lengths share a chunk (little padding), and a chunk
    # too big for memory fails on the first step rather than the last.
    order = np.argsort(-lengths, kind="stable")
    pooled = [None] * len(texts)
    for start in range(0, len(texts), batchSize):
        rows = order[start : start + batchSize]
        longest = int(lengths[rows].max())
        mask = np.arange(longest)[None, :] < lengths[rows][:, None]
        inputs = {"attention_mask": torch.from_numpy(mask.astype(np.int64))}
        for name in names:
            padded = np.full((len(rows), longest), pad_values.get(name, 0), dtype=np.int64)
            for j, row in enumerate(rows):
                padded[j, : lengths[row]] = encoded[name][row]
            inputs[name] = torch.from_numpy(padded)
        with torch.inference_mode(), devices.autocast(encoder.precision, encoder.device):
            inputs = {k: devices.to_device(v, encoder.device) for k, v in inputs.items()}
            hidden = encoder.model(**inputs).hidden_states
            chosen = [hidden[i] for i in indices]
            states = torch.stack(chosen).sum(0) if combine == "sum" else torch.cat(chosen, dim=-1)
            if pooling == "cls":
                out = states[:, 0]
            elif pooling == "mean":
                weights = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
                out = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            else:
                out = states
            out = out.float().cpu().numpy()
        for j, row in enumerate(rows):
            pooled[row] = out[j] if pooling != "none" else out[j, : lengths[row]]
    if pooling == "none":
        return pooled, [tokenizer.convert_ids_to_tokens(x) for x in ids], truncated
    return np.stack(pooled), None, truncated


def _count_truncated(tokenizer, texts: list[str], encoded, max_length: int) -> int:
    encodings = getattr(encoded, "encodings", None)
    if encodings:  # fast tokenizers keep what truncation cut off
        return sum(1 for e in encodings if e.overflowing)
    full = tokenizer(texts, truncation=False)["input_ids"]
    return sum(len(x) > max_length for x in full)
