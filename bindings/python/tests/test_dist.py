"""The distributions bindings/python/build-dist makes (conftest.py's dist fixture: --sdist --cpu,
built once; test_wheel.py installs and checks the same +cpu wheel): the sdist carries the C
sources and LICENSE and installs with pip into a fresh venv (build tools and numpy from PyPI;
CPU-only, so the test stays fast on machines with nvcc or clang-22); the wheel's name has the
+cpu local version and the platform tag auditwheel reports."""

import os
import pathlib
import re
import subprocess
import sys
import tarfile
import textwrap
import zipfile

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent
HEADER = PKG.parent.parent / "include" / "spmla.h"

CHECK = textwrap.dedent(r"""
    import os, sys
    import numpy as np
    import spmla
    assert os.path.dirname(spmla.__file__).startswith(sys.prefix), spmla.__file__
    rng = np.random.default_rng(7)
    x = rng.permutation(64 * 300).astype(np.float32).reshape(64, 300)  # distinct values
    k = 17
    got = np.sort(spmla.topk_per_row(x, k), axis=1)
    want = np.sort(np.argsort(-x, axis=1)[:, :k], axis=1)
    assert np.array_equal(got, want)
    print("dist ok", spmla.__version__)
""")


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def _version():
    if not HEADER.exists():
        pytest.skip("not run from a source checkout")
    return re.search(r'#define SPMLA_VERSION_STRING "([0-9.]+)"', HEADER.read_text()).group(1)


def _clean_env():
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "LD_LIBRARY_PATH", "SPMLA_BACKEND_PATH", "SPMLA_PY_VARIANT")}


@pytest.mark.slow
def test_sdist_contents(dist):
    v = _version()
    sdist = dist["sdist"]
    assert sdist.name == f"spmla-{v}.tar.gz"
    top = f"spmla-{v}/"
    with tarfile.open(sdist) as t:
        members = {m.name: m for m in t.getmembers()}
        assert all(m.isfile() or m.isdir() for m in members.values()), \
            [n for n, m in members.items() if m.issym() or m.islnk()]
        lic = t.extractfile(top + "LICENSE").read().decode()
        pkg_info = t.extractfile(top + "PKG-INFO").read().decode()
    names = {n[len(top):] for n in members if n.startswith(top)}
    assert lic.lstrip().startswith("Apache License")
    assert re.search(rf"^Version: {re.escape(v)}$", pkg_info, re.M), pkg_info[:500]
    # The C library's sources (core, CPU backend, GPU plugins, CMake) and the binding's.
    for need in ("pyproject.toml", "CMakeLists.txt", "README.md", "src/ext/module.cpp",
                 "src/spmla/__init__.py", "csrc/CMakeLists.txt", "csrc/include/spmla.h",
                 "csrc/include/spmla_backend.h", "csrc/src/libspmla.map", "csrc/src/api.cpp",
                 "csrc/backends/cuda/CMakeLists.txt", "csrc/backends/hip/CMakeLists.txt",
                 "csrc/backends/common/params.h", "csrc/cmake/install.cmake"):
        assert need in names, need
    root = PKG.parent.parent
    for sub in ("src", "include", "backends", "numerics"):
        ours = {str(p.relative_to(root)) for p in (root / sub).rglob("*") if p.is_file()}
        assert ours <= {n[len("csrc/"):] for n in names if n.startswith("csrc/")}, sub
    # No tests, tools, build trees or this script.
    assert not any(n.startswith(("tests/", "csrc/tests/", "csrc/tools/", "build/")) for n in names)
    assert "build-dist" not in names and "run-tests" not in names


@pytest.mark.slow
def test_cpu_wheel_name_and_platform_tag(dist):
    v = _version()
    whl = dist["cpu"]
    py = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    m = re.fullmatch(rf"spmla-{re.escape(v)}\+cpu-{py}-{py}-(manylinux_\d+_\d+_\w+)\.whl", whl.name)
    assert m, whl.name
    with zipfile.ZipFile(whl) as z:
        info = z.read(f"spmla-{v}+cpu.dist-info/WHEEL").decode()
        meta = z.read(f"spmla-{v}+cpu.dist-info/METADATA").decode()
    assert f"Tag: {py}-{py}-{m.group(1)}" in info, info
    assert f"Version: {v}+cpu" in meta
    try:
        import auditwheel  # noqa: F401
    except ImportError:
        pytest.skip("auditwheel is not installed (build-dist used it from its own venv)")
    out = _run([sys.executable, "-m", "auditwheel", "show", whl]).stdout
    tag = re.search(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"([^"]+)"', out)
    assert tag and tag.group(1) == m.group(1), out


@pytest.mark.slow
def test_sdist_installs_into_fresh_venv(dist, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    # pip builds the sdist (scikit-build-core, pybind11 in an isolated environment, numpy as the
    # dependency: all from PyPI). CPU-only: the default would also build the CUDA / HIP plugin
    # where nvcc / clang-22 is installed, which takes minutes.
    env = dict(_clean_env(), CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get(
        "CMAKE_BUILD_PARALLEL_LEVEL", str(min(os.cpu_count() or 1, 8))))
    _run([py, "-m", "pip", "install", "-q", dist["sdist"], "-Ccmake.define.SPMLA_CPU_ONLY=ON"],
         env=env, cwd=tmp_path, timeout=1800)
    r = _run([py, "-c", CHECK], cwd=tmp_path, env=_clean_env(), timeout=600)
    assert f"dist ok {_version()}" in r.stdout, r.stdout
