"""Checks that the sdist and the wheel hold what an install needs at run time, and nothing of the checkout's own.

    python .ci/dist_contents.py <checkout> <sdist.tar.gz> <wheel.whl>

The wheel: every module of sparkneural/, the pipelines and confs as
sparkneural/pipelines/ and sparkneural/conf/, the compiler wrapper that
``sparkneural build-horovod`` uses, py.typed, the ``sparkneural`` console
script and a README long description. The sdist: the same sources at their
checkout paths, README.md, pyproject.toml and the Spark lines' pins; no tests.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path


def expected_sources(root: Path) -> dict[str, str]:
    """Checkout path -> path inside the wheel, for everything an install needs."""
    files = {str(p.relative_to(root)): str(p.relative_to(root)) for p in (root / "sparkneural").rglob("*.py")}
    files.update({f"sparkneural/{name}": f"sparkneural/{name}" for name in ("cxx17", "py.typed")})
    files.update({f"pipelines/{p.name}": f"sparkneural/pipelines/{p.name}" for p in (root / "pipelines").glob("*.py")})
    files.update({f"conf/{p.name}": f"sparkneural/conf/{p.name}" for p in (root / "conf").glob("*.yaml")})
    return files


def check(root: Path, sdist: Path, wheel: Path) -> list[str]:
    problems = []
    sources = expected_sources(root)
    with zipfile.ZipFile(wheel) as zf:
        held = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in held if n.split("/")[0].endswith(".dist-info"))
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    problems += [f"wheel lacks {name}" for name in sorted(set(sources.values()) - held)]
    problems += [f"wheel holds {name}" for name in sorted(held) if name.split("/")[0] in ("tests", "benchmarks", "notebooks", "scripts", "data")]
    if "sparkneural = sparkneural.cli:main" not in entry_points:
        problems.append("wheel: no `sparkneural` console script")
    if "Description-Content-Type: text/markdown" not in metadata or "Provides-Extra: horovod" not in metadata:
        problems.append("wheel METADATA: no markdown long description, or no horovod extra")
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        in_sdist = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
    pins = {str(p.relative_to(root)) for p in (root / "requirements").glob("*.txt")}
    problems += [f"sdist lacks {name}" for name in sorted({*sources, *pins, "README.md", "pyproject.toml"} - in_sdist)]
    problems += [f"sdist holds {name}" for name in sorted(in_sdist) if name.startswith("tests/")]
    print(f"wheel {wheel.name}: {len(held)} files; sdist {sdist.name} ({top}/): {len(in_sdist)} files; "
          f"{len(sources)} expected sources checked in both")
    print(f"  sdist, outside sparkneural/: {' '.join(sorted(n for n in in_sdist if not n.startswith('sparkneural') and not n.endswith('/')))}")
    for label, names in (("wheel, outside .py modules", sorted(n for n in held if not n.endswith(".py"))),
                         ("wheel, pipelines and conf", sorted(n for n in held if n.startswith(("sparkneural/pipelines/", "sparkneural/conf/"))))):
        print(f"  {label}: {' '.join(names)}")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
