"""torch for the test suite: imported when installed; when SPMLA_REQUIRE_TORCH=1 (run-tests sets
it after install-torch put torch in the venv) a missing torch is a failure, never a skip."""

import os

import pytest


def require_torch():
    """The torch module, or a module-level skip (a failure under SPMLA_REQUIRE_TORCH=1)."""
    try:
        import torch
    except ImportError as e:
        if os.environ.get("SPMLA_REQUIRE_TORCH") == "1":
            pytest.fail(f"SPMLA_REQUIRE_TORCH=1 but torch does not import: {e}", pytrace=False)
        pytest.skip("torch is not installed (bindings/python/install-torch puts it in the test "
                    "venv)", allow_module_level=True)
    return torch


def fp8_flashmla_style_pages(torch, np_pages):
    """A torch view of numpy cache bytes as FlashMLA's tests hold them (float8_e4m3fn)."""
    return torch.from_numpy(np_pages).view(torch.float8_e4m3fn)
