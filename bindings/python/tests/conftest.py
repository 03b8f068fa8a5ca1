"""pytest configuration of the spmla Python suite.

Run from anywhere: ``python -m pytest bindings/python/tests`` (after ``pip install
./bindings/python``). The FlashMLA / FP8 vectors are looked up in $SPMLA_VECTORS_DIR, then in
``<repo>/tests/vectors`` (the committed copy of shared/vectors); tests that need them fail when
absent.
"""

import os
import pathlib
import sys
import zlib

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parent.parent.parent


def vectors_dir():
    cands = []
    if os.environ.get("SPMLA_VECTORS_DIR"):
        cands.append(pathlib.Path(os.environ["SPMLA_VECTORS_DIR"]))
    cands.append(REPO / "tests" / "vectors")
    for c in cands:
        if (c / "fp8_codes.tsv").exists():
            return c
    return None


@pytest.fixture(scope="session")
def vectors():
    d = vectors_dir()
    if d is None:
        pytest.fail("public test vectors not found: expected tests/vectors in the repository or $SPMLA_VECTORS_DIR")
    return d


@pytest.fixture
def rng(request):
    # A fixed seed per test, so a failure reproduces.
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """bindings/python/build-dist --sdist --cpu, once per session (test_wheel.py, test_dist.py):
    {"sdist": path, "cpu": path}. Uses this interpreter's scikit-build-core and pybind11 when it
    has them (offline machines), else build-dist's isolated builds from PyPI."""
    import subprocess

    if os.environ.get("SPMLA_SKIP_WHEEL_TEST") == "1":
        pytest.skip("SPMLA_SKIP_WHEEL_TEST=1")
    script = HERE.parent / "build-dist"
    if not script.exists():
        pytest.skip("not run from a source checkout")
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, str(script), "--sdist", "--cpu", "-o", str(out), "--python", sys.executable,
           "-j", os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(min(os.cpu_count() or 1, 8)))]
    try:
        import pybind11  # noqa: F401
        import scikit_build_core  # noqa: F401

        cmd.append("--no-isolation")
    except ImportError:
        pass
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    sdists = list(out.glob("spmla-*.tar.gz"))
    wheels = list(out.glob("spmla-*+cpu-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, (list(out.iterdir()), r.stdout[-3000:])
    made = [line for line in r.stdout.splitlines() if line.startswith(str(out))]
    assert sorted(made) == sorted(map(str, sdists + wheels)), r.stdout[-3000:]
    return {"sdist": sdists[0], "cpu": wheels[0], "log": r.stdout}
