"""pytest configuration of the spmla Python suite.

Run from anywhere: ``python -m pytest bindings/python/tests`` (after ``pip install
./bindings/python``). The FlashMLA / FP8 vectors are looked up in $SPMLA_VECTORS_DIR, then in
``<repo>/../shared/vectors``; tests that need them skip with that reason when absent.
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
    cands.append(REPO.parent / "shared" / "vectors")
    for c in cands:
        if (c / "fp8_codes.tsv").exists():
            return c
    return None


@pytest.fixture(scope="session")
def vectors():
    d = vectors_dir()
    if d is None:
        pytest.skip("public test vectors not found: set SPMLA_VECTORS_DIR to shared/vectors")
    return d


@pytest.fixture
def rng(request):
    # A fixed seed per test, so a failure reproduces.
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
