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
