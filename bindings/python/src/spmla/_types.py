"""Enumerations of the C ABI (dtypes, KV layouts and arrangements, FP8 flavors) and their Python
spellings."""

from __future__ import annotations

import enum
from typing import Any

from ._errors import InvalidArgumentError

__all__ = ["DType", "Layout", "Arrangement", "FP8Flavor", "Option", "as_dtype", "as_layout",
           "as_arrangement", "as_flavor"]


class DType(enum.IntEnum):
    """Element types of spmla tensors (``spmla_dtype_t``)."""

    BF16 = 1
    FP16 = 2
    FP32 = 3
    INT32 = 4
    INT64 = 5
    UINT8 = 6
    FP8_E4M3FN = 7
    FP8_E4M3FNUZ = 8
    UE8M0 = 9

    @property
    def itemsize(self) -> int:
        return 1 if self in (DType.UINT8, DType.FP8_E4M3FN, DType.FP8_E4M3FNUZ, DType.UE8M0) else (
            2 if self in (DType.BF16, DType.FP16) else (8 if self is DType.INT64 else 4))


class Layout(enum.IntEnum):
    """KV-cache layouts (``spmla_kv_layout_t``); see docs/SPEC.md "KV cache layouts"."""

    BF16 = 1
    FP8_PER_TENSOR = 2
    V32_FP8 = 3
    V4_FP8 = 4
    INDEXER_FP8 = 5
    V41_FP8 = 6  # DeepSeek-V4.1: 512 E4M3 + 16 UE8M0 scales = 528 B/token (ABI 1.2)
    V41_FP4 = 7  # DeepSeek-V4.1: 256 B of E2M1 + 32 E4M3FN scales = 288 B/token (ABI 1.2)


class Arrangement(enum.IntEnum):
    """How a page arranges its tokens' bytes (``spmla_kv_arrangement_t``, ABI 1.2). The V41
    layouts exist in both and must name theirs; the others have one (``DEFAULT``)."""

    DEFAULT = 0
    PER_TOKEN = 1  # each token's data then its scales; FlashMLA from 2026-09-30
    PAGE_BLOCKED = 2  # block_size data rows, then block_size scale rows, page to 512 B; 2026-09-10


class Option(enum.IntEnum):
    """Handle options (``spmla_option_t``, ABI 1.3), for :meth:`Handle.set_option`."""

    BATCH_INVARIANT = 1  # 0 / 1: a token's results do not depend on the other tokens of a call


class FP8Flavor(enum.IntEnum):
    """FP8 encodings (``spmla_fp8_flavor_t``). Always explicit, never guessed from the device."""

    NONE = 0
    E4M3FN = 1
    E4M3FNUZ = 2


_DTYPE_NAMES = {
    "bf16": DType.BF16, "bfloat16": DType.BF16,
    "fp16": DType.FP16, "float16": DType.FP16, "half": DType.FP16,
    "fp32": DType.FP32, "float32": DType.FP32, "float": DType.FP32,
    "int32": DType.INT32, "int": DType.INT32,
    "int64": DType.INT64, "long": DType.INT64,
    "uint8": DType.UINT8, "u8": DType.UINT8,
    "fp8_e4m3fn": DType.FP8_E4M3FN, "float8_e4m3fn": DType.FP8_E4M3FN, "e4m3fn": DType.FP8_E4M3FN,
    "fp8_e4m3fnuz": DType.FP8_E4M3FNUZ, "float8_e4m3fnuz": DType.FP8_E4M3FNUZ,
    "e4m3fnuz": DType.FP8_E4M3FNUZ,
    "ue8m0": DType.UE8M0, "float8_e8m0fnu": DType.UE8M0, "e8m0": DType.UE8M0,
}

_LAYOUT_NAMES = {
    "bf16": Layout.BF16,
    "fp8_per_tensor": Layout.FP8_PER_TENSOR, "fp8": Layout.FP8_PER_TENSOR,
    "v32_fp8": Layout.V32_FP8, "fp8_ds_mla": Layout.V32_FP8, "v32": Layout.V32_FP8,
    "v4_fp8": Layout.V4_FP8, "v4": Layout.V4_FP8, "model1_fp8": Layout.V4_FP8,
    "indexer_fp8": Layout.INDEXER_FP8, "indexer": Layout.INDEXER_FP8,
    "v41_fp8": Layout.V41_FP8, "v41_fp4": Layout.V41_FP4,
}

_FLAVOR_NAMES = {
    "none": FP8Flavor.NONE,
    "e4m3fn": FP8Flavor.E4M3FN, "fp8_e4m3fn": FP8Flavor.E4M3FN, "float8_e4m3fn": FP8Flavor.E4M3FN,
    "ocp": FP8Flavor.E4M3FN,
    "e4m3fnuz": FP8Flavor.E4M3FNUZ, "fp8_e4m3fnuz": FP8Flavor.E4M3FNUZ,
    "float8_e4m3fnuz": FP8Flavor.E4M3FNUZ, "fnuz": FP8Flavor.E4M3FNUZ,
}


def _key(x: Any) -> str:
    s = str(x).strip().lower()
    for prefix in ("torch.", "numpy.", "np.", "dtype.", "layout.", "fp8flavor."):
        if s.startswith(prefix):
            s = s[len(prefix):]
    return s.replace("-", "_")


def as_dtype(x: Any) -> DType:
    """A :class:`DType` from a DType, its value, a name (``"bf16"``, ``"fp8_e4m3fn"``) or a
    numpy / ml_dtypes / torch dtype."""
    if isinstance(x, DType):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        try:
            return DType(x)
        except ValueError:
            pass
    else:
        name = getattr(x, "name", None)  # numpy / ml_dtypes dtype objects
        for candidate in ((name,) if isinstance(name, str) else ()) + (x,):
            d = _DTYPE_NAMES.get(_key(candidate))
            if d is not None:
                return d
        if isinstance(x, type):
            d = _DTYPE_NAMES.get(_key(x.__name__))
            if d is not None:
                return d
    raise InvalidArgumentError(f"dtype: {x!r} is not an spmla dtype "
                               f"(expected one of {sorted(set(_DTYPE_NAMES))})")


def as_layout(x: Any) -> Layout:
    """A :class:`Layout` from a Layout, its value or a name (``"v32_fp8"``, ``"v4_fp8"``...)."""
    if isinstance(x, Layout):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        try:
            return Layout(x)
        except ValueError:
            pass
    else:
        d = _LAYOUT_NAMES.get(_key(x))
        if d is not None:
            return d
    raise InvalidArgumentError(f"layout: {x!r} is not a KV-cache layout "
                               f"(expected one of {sorted(_LAYOUT_NAMES)})")


_ARRANGEMENT_NAMES = {
    "default": Arrangement.DEFAULT,
    "per_token": Arrangement.PER_TOKEN, "token": Arrangement.PER_TOKEN,
    "page_blocked": Arrangement.PAGE_BLOCKED, "blocked": Arrangement.PAGE_BLOCKED,
}


def as_arrangement(x: Any) -> Arrangement:
    """An :class:`Arrangement` from an Arrangement, its value, a name (``"per_token"``,
    ``"page_blocked"``) or None (= DEFAULT, which the C library refuses for the V41 layouts)."""
    if x is None:
        return Arrangement.DEFAULT
    if isinstance(x, Arrangement):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        try:
            return Arrangement(x)
        except ValueError:
            pass
    elif isinstance(x, str):
        d = _ARRANGEMENT_NAMES.get(_key(x))
        if d is not None:
            return d
    raise InvalidArgumentError(f"arrangement: {x!r} is not a KV-cache arrangement "
                               f"(expected one of {sorted(_ARRANGEMENT_NAMES)} or None)")


def as_flavor(x: Any) -> FP8Flavor:
    """An :class:`FP8Flavor` from a flavor, its value, a name or None (= NONE)."""
    if x is None:
        return FP8Flavor.NONE
    if isinstance(x, FP8Flavor):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        try:
            return FP8Flavor(x)
        except ValueError:
            pass
    else:
        name = getattr(x, "name", None)
        if isinstance(x, type):
            name = x.__name__
        for candidate in ((name,) if isinstance(name, str) else ()) + (x,):
            d = _FLAVOR_NAMES.get(_key(candidate))
            if d is not None:
                return d
    raise InvalidArgumentError(f"fp8_flavor: {x!r} is not an FP8 flavor "
                               f"(expected 'e4m3fn' or 'e4m3fnuz')")
