"""``sparkneural build-horovod``: build Horovod for this interpreter's torch and install it here.

pip cannot build horovod 0.28.1 against torch >= 2.1 by itself: Horovod's
CMake files ask for C++14 while torch's headers need C++17. The build runs
with ``CXX`` set to the ``cxx17`` wrapper shipped in this package, which
rewrites the standard flag and hands everything else to the real compiler
(``$SPARKNEURAL_REAL_CXX``, else ``g++``).

Horovod is built for PyTorch with Gloo (no MPI, TensorFlow or MXNet), and
with NCCL too where torch is a CUDA build and ``nvcc`` is on PATH. The wheel
is cached under ``${XDG_CACHE_HOME:-~/.cache}/sparkneural/wheels/torch-<ver>[-cuda<ver>]``,
so every environment with the same torch reuses one build, and is installed
with ``--no-deps``: its runtime needs come from the ``horovod`` extra (its
own ``[spark]`` extra would pin pyarrow < 11).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path
from typing import Sequence

HOROVOD_VERSION = "0.28.1"
# Horovod's setup.py imports these at build time (pip's build isolation is off so it sees this torch).
BUILD_REQUIREMENTS = {"setuptools": "setuptools<81", "wheel": "wheel", "packaging": "packaging"}


@dataclass(frozen=True)
class Plan:
    """What a build for this interpreter's torch needs: where the wheel is cached, and how to build it."""

    torch_version: str
    cuda: str | None
    nccl: bool
    cache: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ops(self) -> str:
        return "PyTorch + Gloo" + (f" + NCCL for CUDA {self.cuda}" if self.nccl else "")

    def cached_wheel(self) -> Path | None:
        found = sorted(self.cache.glob(f"horovod-{HOROVOD_VERSION}-*.whl"))
        return found[0] if found else None

    def import_check(self) -> str:
        """Python source that fails unless horovod.torch imports here (with NCCL when the plan needs it)."""
        check = "import horovod, horovod.torch as h"
        if self.nccl:
            check += "; assert h.nccl_built(), 'horovod was built without NCCL'"
        return check + "; print('horovod', horovod.__version__, 'imports with torch', __import__('torch').__version__)"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparkneural" / "wheels"


def plan(python: str = sys.executable) -> Plan:
    """The build plan for ``python``'s torch: ``torch-<ver>``, and ``-cuda<ver>`` with NCCL when it can be built."""
    probe = "import torch; print(torch.__version__.split('+')[0]); print(torch.version.cuda or '')"
    lines = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if lines.returncode != 0:
        raise SystemExit(f"sparkneural build-horovod: torch does not import in {python}:\n{lines.stderr.strip()}")
    torch_version, cuda = (lines.stdout.splitlines() + ["", ""])[:2]
    nccl = bool(cuda) and shutil.which("nvcc") is not None
    cache = cache_root() / (f"torch-{torch_version}" + (f"-cuda{cuda}" if nccl else ""))
    env = {
        "HOROVOD_WITH_PYTORCH": "1", "HOROVOD_WITH_GLOO": "1", "HOROVOD_WITHOUT_MPI": "1",
        "HOROVOD_WITHOUT_TENSORFLOW": "1", "HOROVOD_WITHOUT_MXNET": "1",
        "MAKEFLAGS": os.environ.get("MAKEFLAGS") or f"-j{os.cpu_count() or 2}",
    }
    if nccl:
        env["HOROVOD_GPU_OPERATIONS"] = "NCCL"
        env["HOROVOD_CUDA_HOME"] = str(Path(shutil.which("nvcc") or "").resolve().parent.parent)
    return Plan(torch_version, cuda or None, nccl, cache, env)


def build_command(python: str, out: Path) -> list[str]:
    return [python, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(out), f"horovod=={HOROVOD_VERSION}"]


def install_command(python: str, wheel: Path) -> list[str]:
    return [python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)]


def wrapper_copy(directory: Path) -> Path:
    """The packaged ``cxx17`` wrapper, copied into ``directory`` and made executable (package data has no mode bits)."""
    target = directory / "cxx17"
    with as_file(files("sparkneural") / "cxx17") as source:
        shutil.copyfile(source, target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


def _nccl_env(python: str, workdir: Path) -> dict[str, str]:
    """Point the build at the NCCL that torch's CUDA wheels bring (nvidia-nccl-cu*), unless HOROVOD_NCCL_HOME is set."""
    if os.environ.get("HOROVOD_NCCL_HOME"):
        return {}
    probe = "import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if found.returncode != 0:
        return {}
    nccl = Path(found.stdout.strip())
    libraries = sorted((nccl / "lib").glob("libnccl.so.*"))
    if not libraries:
        return {}
    # The wheel ships libnccl.so.2 only; the linker looks for libnccl.so.
    (workdir / "nccl" / "lib").mkdir(parents=True, exist_ok=True)
    (workdir / "nccl" / "lib" / "libnccl.so").symlink_to(libraries[0])
    return {"HOROVOD_NCCL_INCLUDE": str(nccl / "include"), "HOROVOD_NCCL_LIB": str(workdir / "nccl" / "lib"),
            "HOROVOD_NCCL_LINK": "SHARED"}


def _missing_build_requirements(python: str) -> list[str]:
    missing = []
    for module, requirement in BUILD_REQUIREMENTS.items():
        if subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode != 0:
            missing.append(requirement)
    if shutil.which("cmake") is None and shutil.which("cmake", path=str(Path(python).parent)) is None:
        missing.append("cmake")
    return missing


def _run(command: Sequence[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(list(command), env=env)
    if result.returncode != 0:
        raise SystemExit(f"sparkneural build-horovod: {shlex.join(command)} exited with {result.returncode}")


def _describe_build(the_plan: Plan, python: str, wrapper: str) -> str:
    assignments = [f"{k}={shlex.quote(v)}" for k, v in {**the_plan.env, "CXX": wrapper}.items()]
    assignments.append(f'PATH={shlex.quote(str(Path(python).parent))}:"$PATH"')
    return " \\\n  ".join([*assignments, shlex.join(build_command(python, Path("<build dir>")))])


def build_and_install(python: str = sys.executable, rebuild: bool = False, dry_run: bool = False) -> int:
    """Install horovod built for ``python``'s torch: reuse the cached wheel, or build and cache one first."""
    the_plan = plan(python)
    already = subprocess.run([python, "-c", the_plan.import_check()], capture_output=True, text=True)
    wheel = None if rebuild else the_plan.cached_wheel()
    print(f"horovod {HOROVOD_VERSION} for torch {the_plan.torch_version} ({the_plan.ops}); wheel cache: {the_plan.cache}")
    if dry_run:
        if already.returncode == 0:
            print(f"installed: {already.stdout.strip()} " + ("(--rebuild: building again)" if rebuild else "(nothing to do)"))
        else:
            print("installed: no")
        print("build" + (f" (not needed: cached {wheel.name})" if wheel else "") + ", CXX being the packaged cxx17 wrapper:")
        print("  " + _describe_build(the_plan, python, "<build dir>/cxx17"))
        print("install:\n  " + shlex.join(install_command(python, wheel or the_plan.cache / f"horovod-{HOROVOD_VERSION}-<tag>.whl")))
        return 0
    if already.returncode == 0 and not rebuild:
        print(f"already installed: {already.stdout.strip()}")
        return 0
    if wheel is None:
        wheel = _build(the_plan, python)
    else:
        print(f"installing the cached wheel {wheel}")
    _run(install_command(python, wheel))
    check = subprocess.run([python, "-c", the_plan.import_check()], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"sparkneural build-horovod: installed {wheel.name}, but horovod.torch does not import:\n"
                         f"{check.stderr.strip()[-2000:]}")
    print(check.stdout.strip())
    return 0


def _build(the_plan: Plan, python: str) -> Path:
    missing = _missing_build_requirements(python)
    if missing:
        print(f"installing the build requirements {missing}")
        _run([python, "-m", "pip", "install", "-q", *missing])
    print(f"building horovod {HOROVOD_VERSION} ({the_plan.ops}); this takes a few minutes once")
    with tempfile.TemporaryDirectory(prefix="horovod-build-") as work:
        workdir = Path(work)
        out = workdir / "wheel"
        env = {**os.environ, **the_plan.env, "CXX": str(wrapper_copy(workdir)),
               "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        if the_plan.nccl:
            env.update(_nccl_env(python, workdir))
        _run(build_command(python, out), env=env)
        built = sorted(out.glob(f"horovod-{HOROVOD_VERSION}-*.whl"))
        if not built:
            raise SystemExit(f"sparkneural build-horovod: pip wheel wrote no horovod wheel into {out}")
        the_plan.cache.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built[0], the_plan.cache / built[0].name))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rebuild", action="store_true", help="build again even when a cached wheel or an install exists")
    parser.add_argument("--dry-run", action="store_true", help="print the build and install commands and environment; change nothing")
