"""sparkneural's training loop and batch scoring on one GPU against plain PyTorch on the same GPU.

Runs where only Python, a CUDA build of torch, pyarrow and transformers
are installed: no Java, no Spark, no network. The training rows are written
as Parquet with pyarrow in the layout ``fit()`` materialises, and each
sparkneural path is the code a rank or a scoring task runs:

- training: ``sparkneural.training.loop.train`` with the local collective (one
  rank), reading the Parquet shard; plain PyTorch trains the same network
  on the same rows held on the GPU as tensors (a random permutation each
  epoch, Adam, cross entropy, ``torch.autocast`` for bf16). Samples/s of the
  best epoch after the first.
- inference: ``sparkneural.estimators.scoring.score`` over the Parquet file's
  Arrow record batches, as a scoring task of ``transform`` runs it (input
  checks on the device, decode, forward and encode overlapped, all three
  MLlib output columns encoded as Arrow); plain PyTorch decodes the same
  Arrow batches, runs the network and copies the same three outputs
  (centred logits, probabilities, predicted class) back to numpy, one step
  after the other.
- BERT-sized encoder forward (12 layers, hidden 768, random weights):
  ``sparkneural.text.encoder.embed_texts`` (mean pooling of the last layer)
  against the tokenizer and model called directly on batches of the same
  texts, twice: in the texts' order (what users write) and sorted by length
  like ``embed_texts`` (the like-for-like baseline, which holds the target).

Workloads: the big MLP (64-1024x3-10) and LeNet (1x28x28), each in fp32
and bf16. Targets: sparkneural at least 0.9x plain PyTorch samples/s for
training and for inference; bf16 at least 1.5x fp32 for the big MLP's training.

    python benchmarks/gpu.py                      # on a GPU host: benchmarks/results/gpu.json
    python benchmarks/gpu.py --device cpu --quick # a smoke test anywhere (no targets held)

A smoke run (``--quick`` or ``--device cpu``) writes
``benchmarks/results/gpu-quick.json`` unless ``--out`` says otherwise, so
that it never replaces the full GPU figures.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIG, LENET, RESULTS, Results, arguments, at_least, classification_data, plain_network  # noqa: E402

PRECISIONS = ("32", "bf16-mixed")
TRAIN_TARGET, INFERENCE_TARGET, BF16_TARGET = 0.9, 0.9, 1.5
SMOKE_OUT = RESULTS / "gpu-quick.json"


def main() -> None:
    args = arguments(__doc__.splitlines()[0], device=(str, "cuda", "cuda or cpu"))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU here; use --device cpu for a smoke test")
    quick, device = args.quick, torch.device(args.device)
    sizes = {
        # 16k rows per step: large enough that the GPU's arithmetic, not launching kernels, sets the pace
        "big MLP": dict(BIG, rows=4_000 if quick else 1_000_000, batchSize=256 if quick else 16384, epochs=2 if quick else 4),
        "LeNet": dict(LENET, rows=2_000 if quick else 120_000, batchSize=128 if quick else 1024, epochs=2 if quick else 4),
    }
    bert = {"layers": 2, "hidden": 64, "texts": 64} if quick else {"layers": 12, "hidden": 768, "texts": 4096}
    results = Results("gpu", quick, device=args.device, workloads={k: {n: v for n, v in s.items() if n != "label"} for k, s in sizes.items()},
                      bert=bert, inferenceBatchSize=8192)
    held = args.device == "cuda"  # the targets are about a GPU; the CPU run only proves the script works
    work = tempfile.mkdtemp(prefix="sparkneural-gpu-bench-")

    def ratio(figure: str, target: float, measure, **names: str) -> float | None:
        """Add ``figure``, the ratio of the two numbers ``measure()`` returns; a failure is recorded, not fatal."""
        try:
            ours, theirs = measure()
        except Exception as err:  # noqa: BLE001 - one workload's failure must not lose the others' figures
            traceback.print_exc()
            results.add(figure, None, "x", f">= {target}x" if held else None, None, note=f"failed: {type(err).__name__}: {err}")
            return None
        value = ours / theirs
        results.add(figure, value, "x", f">= {target}x" if held else None, at_least(value, target) if held else None,
                    **{names["ours"]: ours, names["theirs"]: theirs})
        return ours

    try:
        for name, size in sizes.items():
            data = write_parquet(work, name, size)
            speeds = {}
            for precision in PRECISIONS:
                speeds[precision] = ratio(
                    f"{name} training {precision}: sparkneural / plain PyTorch samples/s", TRAIN_TARGET,
                    lambda: (train_sparkneural(data, size, device, precision), train_plain(data, size, device, precision)),
                    ours="sparkneural_samples_per_s", theirs="plain_samples_per_s")
                ratio(f"{name} inference {precision}: sparkneural / plain PyTorch rows/s", INFERENCE_TARGET,
                      lambda: infer(data, size, device, precision), ours="sparkneural_rows_per_s", theirs="plain_rows_per_s")
            if name == "big MLP" and None not in speeds.values():
                value = speeds["bf16-mixed"] / speeds["32"]
                results.add("big MLP training: sparkneural bf16-mixed / fp32 samples/s", value, "x",
                            f">= {BF16_TARGET}x" if held else None, at_least(value, BF16_TARGET) if held else None)
        for precision in PRECISIONS:
            speeds = {}

            def measure_bert() -> tuple[float, float]:
                speeds.update(bert_forward(work, bert, device, precision))
                return speeds["ours"], speeds["sorted"]

            if ratio(f"BERT-sized encoder forward {precision}: sparkneural / plain transformers sorted by length texts/s",
                     INFERENCE_TARGET, measure_bert, ours="sparkneural_texts_per_s", theirs="plain_sorted_texts_per_s"):
                results.add(f"BERT-sized encoder forward {precision}: sparkneural / plain transformers in text order texts/s",
                            speeds["ours"] / speeds["unsorted"], "x", sparkneural_texts_per_s=speeds["ours"],
                            plain_unsorted_texts_per_s=speeds["unsorted"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    smoke = quick or not held
    results.finish(args.out or (str(SMOKE_OUT) if smoke else None))


# -- data ------------------------------------------------------------------------------
def write_parquet(work: str, name: str, size: dict):
    """The workload's rows as Parquet in the layout ``fit()`` writes, and its ``ParquetData``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkneural.data.materialize import FEATURES, LABEL, ROW_GROUP_BYTES, DataFile, ParquetData

    width = math.prod(size["inputShape"])
    x, y = classification_data(size["rows"], width)
    offsets = pa.array(np.arange(len(x) + 1, dtype=np.int32) * width)
    table = pa.table({FEATURES: pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1))), LABEL: pa.array(y.astype(np.float64))})
    group = max(1, ROW_GROUP_BYTES * table.num_rows // table.nbytes)
    root = os.path.join(work, name.replace(" ", "-"))
    os.makedirs(root)
    pq.write_table(table, os.path.join(root, "part-0.parquet"), row_group_size=group, compression="none")
    groups = tuple(min(group, table.num_rows - start) for start in range(0, table.num_rows, group))
    return ParquetData(root, (DataFile("part-0.parquet", groups, (0,) * len(groups)),), has_label=True, has_validation=False,
                       rowBytes=-(-table.nbytes // table.num_rows))


# -- training --------------------------------------------------------------------------
def train_sparkneural(data, size: dict, device, precision: str) -> float:
    from sparkneural.training.collective import LocalCollective
    from sparkneural.training.loop import train
    from sparkneural.training.spec import TrainSpec

    spec = TrainSpec(data=data, architecture=size["architecture"], architectureParams=size["architectureParams"],
                     inputShape=tuple(size["inputShape"]), outputSize=10, epochs=size["epochs"], batchSize=size["batchSize"],
                     device=device.type, precision=precision, verbose=0, lossFunction="cross_entropy")
    result = train(spec, LocalCollective())
    return data.rows / min(r["seconds"] for r in result.history[1:])


def train_plain(data, size: dict, device, precision: str) -> float:
    """The loop a PyTorch user writes: rows on the GPU, a permutation per epoch, Adam, cross entropy."""
    import torch

    from sparkneural.data.shards import ParquetReader, plan_shard, read_pieces

    x, y = read_pieces(ParquetReader(data), plan_shard(data, 0, 1)[0])
    x = torch.from_numpy(x.reshape(-1, *size["inputShape"])).to(device)
    y = torch.from_numpy(y.astype(np.int64)).to(device)
    torch.manual_seed(0)
    net = plain_network(size).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    seconds = []
    for _ in range(size["epochs"]):
        started = time.perf_counter()
        order = torch.randperm(len(x), device=device)
        for start in range(0, len(x), size["batchSize"]):
            index = order[start : start + size["batchSize"]]
            with autocast:
                loss = loss_fn(net(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loss.item()  # waits for the GPU, as the epoch's metrics do in sparkneural
        seconds.append(time.perf_counter() - started)
    return len(x) / min(seconds[1:])


# -- inference -------------------------------------------------------------------------
def infer(data, size: dict, device, precision: str, repeats: int = 3) -> tuple[float, float]:
    """Rows/s of sparkneural's batch function and of a plain loop over the same Arrow batches (best of ``repeats``)."""
    import pyarrow.parquet as pq
    import torch

    from sparkneural.data import arrow
    from sparkneural.data.materialize import FEATURES
    from sparkneural.estimators import inference, scoring
    from sparkneural.training.tasks import get_task

    shape, width, chunk = tuple(size["inputShape"]), math.prod(size["inputShape"]), 8192
    batches = pq.read_table(os.path.join(data.root, data.files[0].name), columns=[FEATURES]).to_batches(max_chunksize=chunk)
    torch.manual_seed(0)
    weights = {k: v.numpy() for k, v in plain_network(size).state_dict().items()}
    architecture = {"architecture": size["architecture"], "architectureParams": size["architectureParams"],
                    "inputShape": list(shape), "outputSize": 10}
    ours_net = inference.load_network(architecture, weights, device)
    task = get_task("classification")
    outputs = [("raw", arrow.dense_vectors), ("probability", arrow.dense_vectors), ("prediction", arrow.doubles)]

    def ours() -> None:
        scored = scoring.score(iter(batches), column=lambda batch: batch.column(0), width=width, batch_size=chunk,
                               outputs=outputs, label="features",
                               network=lambda x: scoring.launch(ours_net, x.reshape(-1, *shape), task, None, precision, "features"))
        for _ in scored:
            pass

    plain_net = plain_network(size).to(device).eval()
    plain_net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def plain() -> None:
        with torch.inference_mode(), autocast:
            for batch in batches:
                x = batch.column(0).flatten().to_numpy().reshape(-1, *shape)
                logits = plain_net(torch.from_numpy(x).to(device)).float()
                # what transform writes: centred logits, probabilities and the predicted class
                (logits - logits.mean(dim=1, keepdim=True)).cpu().numpy()
                torch.softmax(logits, dim=1).cpu().numpy()
                logits.argmax(dim=1).cpu().numpy()

    best = {"ours": math.inf, "plain": math.inf}
    ours(), plain()  # warm-up: kernels, allocator, pinned memory
    for _ in range(repeats):
        for label, run in (("ours", ours), ("plain", plain)):
            started = time.perf_counter()
            run()
            best[label] = min(best[label], time.perf_counter() - started)
    rows = data.rows
    return rows / best["ours"], rows / best["plain"]


# -- BERT ------------------------------------------------------------------------------
def bert_forward(work: str, size: dict, device, precision: str, batch: int = 64, repeats: int = 2) -> dict[str, float]:
    """Texts/s of ``embed_texts`` ("ours") and of the tokenizer and model called directly on the same texts,
    in their order ("unsorted") and sorted by length as ``embed_texts`` batches them ("sorted")."""
    import torch

    from sparkneural.text.encoder import Encoder, embed_texts

    path, texts = _bert_directory(work, size)
    encoder = Encoder(path, device, precision)
    layers = size["layers"]

    def ours() -> None:
        embed_texts(encoder, texts, indices=[layers], combine="sum", pooling="mean", maxLength=128, batchSize=batch)

    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def plain(ordered: list[str]) -> None:
        with torch.inference_mode(), autocast:
            for start in range(0, len(ordered), batch):
                inputs = tokenizer(ordered[start : start + batch], padding=True, truncation=True, max_length=128, return_tensors="pt").to(device)
                states = model(**inputs).last_hidden_state
                mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
                ((states * mask).sum(1) / mask.sum(1)).float().cpu().numpy()

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
    by_length = [texts[i] for i in np.argsort(-np.asarray(lengths), kind="stable")]  # longest first, as embed_texts
    runs = {"ours": ours, "unsorted": lambda: plain(texts), "sorted": lambda: plain(by_length)}
    for run in runs.values():
        run()
    best = {label: math.inf for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            started = time.perf_counter()
            run()
            best[label] = min(best[label], time.perf_counter() - started)
    return {label: len(texts) / seconds for label, seconds in best.items()}


def _bert_directory(work: str, size: dict) -> tuple[str, list[str]]:
    """A BERT of ``size`` with random weights and a word-level vocabulary, saved where ``Encoder`` loads it; and texts."""
    path = os.path.join(work, f"bert-{size['layers']}x{size['hidden']}")
    words = [f"w{i}" for i in range(30_000)]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, rng.integers(16, 120))) for _ in range(size["texts"])]
    if os.path.isdir(path):
        return path, texts
    import torch
    import transformers
    from transformers import BertConfig, BertModel

    tokenizer_class = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer

    os.makedirs(path)
    vocab = os.path.join(path, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer_class(vocab_file=vocab).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                        num_attention_heads=max(1, size["hidden"] // 64), intermediate_size=4 * size["hidden"])
    BertModel(config).save_pretrained(path)
    return path, texts


if __name__ == "__main__":
    main()
