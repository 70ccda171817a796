"""What the distribution ships and ``sparkneural build-horovod``: the wrapper, the plan, the cached-wheel path.

The wheel itself is built, installed into a fresh venv and used from outside
the checkout by ``.ci/wheel-check``; these are the cheap checks behind it.
"""

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import torch

from sparkneural import horovod_build

ROOT = Path(__file__).resolve().parent.parent
TORCH = torch.__version__.split("+")[0]


def test_the_package_list_holds_every_subpackage_and_the_mapped_pipelines_and_conf():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    subpackages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sparkneural").rglob("__init__.py")}
    assert set(setuptools["packages"]) == subpackages | {"sparkneural.pipelines", "sparkneural.conf"}
    assert setuptools["package-dir"] == {"sparkneural.pipelines": "pipelines", "sparkneural.conf": "conf"}
    assert {"cxx17", "py.typed"} <= set(setuptools["package-data"]["sparkneural"])


def test_sparkneural_and_the_estimators_import_without_transformers():
    # A finder that refuses transformers, as in an environment without the bert extra.
    code = (
        "import sys\n"
        "class NoTransformers:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'transformers': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoTransformers())\n"
        "import sparkneural, sparkneural.cli, sparkneural.estimators, sparkneural.preprocessing, sparkneural.text\n"
        "from sparkneural.estimators import MLPClassifier, Autoencoder, Seq2Seq\n"
        "try:\n"
        "    import transformers\n"
        "except ModuleNotFoundError:\n"
        "    print('blocked')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "blocked"


def test_the_cxx17_wrapper_rewrites_the_cxx14_standard_and_passes_every_other_argument(tmp_path):
    wrapper = horovod_build.wrapper_copy(tmp_path)
    assert os.access(wrapper, os.X_OK)
    echo = tmp_path / "echo-cxx"
    echo.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    echo.chmod(0o755)
    args = ["-O2", "-std=c++14", "-fPIC", "-std=gnu++14", "-std=c++11", "-I/a dir/include", "-o", "x.o"]
    out = subprocess.run([str(wrapper), *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "SPARKNEURAL_REAL_CXX": str(echo)}).stdout
    assert out.splitlines() == ["-O2", "-std=c++17", "-fPIC", "-std=c++17", "-std=c++11", "-I/a dir/include", "-o", "x.o"]


def _build_horovod(python: str, cache_home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    return subprocess.run([python, "-m", "sparkneural.cli", "build-horovod", *args], capture_output=True, text=True, env=env)


def test_dry_run_prints_the_build_command_and_environment_and_changes_nothing(tmp_path):
    result = _build_horovod(sys.executable, tmp_path, "--dry-run", "--rebuild")
    assert result.returncode == 0, result.stderr
    cache = tmp_path / "sparkneural" / "wheels" / f"torch-{TORCH}"
    lines = [line.strip().rstrip(" \\") for line in result.stdout.splitlines()]
    assert f"wheel cache: {cache}" in lines[0] and "PyTorch + Gloo" in lines[0]
    for assignment in ("HOROVOD_WITH_PYTORCH=1", "HOROVOD_WITH_GLOO=1", "HOROVOD_WITHOUT_MPI=1",
                       "HOROVOD_WITHOUT_TENSORFLOW=1", "HOROVOD_WITHOUT_MXNET=1", "CXX='<build dir>/cxx17'",
                       f'PATH={Path(sys.executable).parent}:"$PATH"'):
        assert assignment in lines
    assert f"{sys.executable} -m pip wheel -q --no-build-isolation --no-deps -w '<build dir>' horovod==0.28.1" in lines
    assert f"{sys.executable} -m pip install -q --no-deps --force-reinstall '{cache}/horovod-0.28.1-<tag>.whl'" in lines
    assert not (tmp_path / "sparkneural").exists()


def _fake_horovod_wheel(directory: Path) -> Path:
    """A wheel named like horovod 0.28.1's whose modules say they are this one."""
    directory.mkdir(parents=True)
    wheel = directory / "horovod-0.28.1-py3-none-any.whl"
    files = {
        "horovod/__init__.py": "__version__ = '0.28.1'\nFROM_CACHED_TEST_WHEEL = True\n",
        "horovod/torch/__init__.py": "def nccl_built():\n    return False\n",
        "horovod-0.28.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: horovod\nVersion: 0.28.1\n",
        "horovod-0.28.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in [*files, "horovod-0.28.1.dist-info/RECORD"])
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in {**files, "horovod-0.28.1.dist-info/RECORD": record}.items():
            zf.writestr(name, text)
    return wheel


def _venv_seeing_this_one_but_horovod(tmp_path: Path) -> Path:
    """A fresh venv that imports this environment's packages (torch, pip, sparkneural) except horovod."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    links = tmp_path / "links"
    links.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith("horovod"):
            (links / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir also runs the .pth files there (the editable install of sparkneural).
    (Path(purelib) / "zz_links.pth").write_text(f"import site; site.addsitedir({str(links)!r})\n")
    return python


def test_a_cached_wheel_is_installed_without_building(tmp_path):
    python = _venv_seeing_this_one_but_horovod(tmp_path)
    assert subprocess.run([str(python), "-c", "import horovod"], capture_output=True).returncode != 0
    cached = _fake_horovod_wheel(tmp_path / "cache" / "sparkneural" / "wheels" / f"torch-{TORCH}")

    result = _build_horovod(str(python), tmp_path / "cache")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"installing the cached wheel {cached}" in result.stdout
    assert "building" not in result.stdout
    assert f"horovod 0.28.1 imports with torch {torch.__version__}" in result.stdout
    installed = subprocess.run([str(python), "-c", "import horovod; print(horovod.FROM_CACHED_TEST_WHEEL, horovod.__file__)"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert installed[0] == "True" and installed[1].startswith(str(tmp_path / "venv"))
    again = _build_horovod(str(python), tmp_path / "cache")
    assert "already installed: horovod 0.28.1" in again.stdout and "installing" not in again.stdout
