"""spmla: portable sparse MLA (DeepSeek-V3.2 / V4 sparse attention) for Python.

A thin, zero-copy binding of the spmla C ABI. Arrays come from any framework that speaks DLPack
(torch, cupy, jax, numpy) or the buffer protocol; outputs are written into ``out=`` arrays or
allocated by the inputs' framework; GPU work runs on the framework's current stream unless
``stream=`` says otherwise. Every failure raises an :class:`spmla.Error` subclass carrying the
C library's message.

Operations (docs/SPEC.md): :func:`sparse_attention` (and :class:`SparseAttentionPlan` for decode),
:func:`indices_to_slots`, :func:`window_indices`, :func:`indexer_logits`,
:func:`indexer_logits_paged`, :func:`topk_per_row`, :func:`kv_cache_store`,
:func:`kv_cache_gather`.
"""

from __future__ import annotations

from typing import Any, Dict

from . import _spmla
from ._cache import KVCache, page_bytes
from ._errors import (
    AbiMismatchError,
    BackendUnavailableError,
    DeviceError,
    Error,
    HandleBusyError,
    InternalError,
    InvalidArgumentError,
    MisalignedError,
    OutOfMemoryError,
    SizeOverflowError,
    UnsupportedError,
    WorkspaceTooSmallError,
)
from ._ops import (
    SparseAttentionPlan,
    indexer_logits,
    indexer_logits_paged,
    indices_to_slots,
    kv_cache_gather,
    kv_cache_store,
    sparse_attention,
    topk_per_row,
    window_indices,
)
from ._runtime import Handle, Typed, Workspace, typed
from ._types import Arrangement, DType, FP8Flavor, Layout, Option

__version__: str = _spmla.version_string()

__all__ = [
    "__version__",
    "info",
    "backends",
    # operations
    "sparse_attention",
    "SparseAttentionPlan",
    "indices_to_slots",
    "window_indices",
    "indexer_logits",
    "indexer_logits_paged",
    "topk_per_row",
    "kv_cache_store",
    "kv_cache_gather",
    # objects
    "KVCache",
    "page_bytes",
    "Handle",
    "Workspace",
    "typed",
    "Typed",
    "DType",
    "Layout",
    "Arrangement",
    "FP8Flavor",
    "Option",
    # errors
    "Error",
    "InvalidArgumentError",
    "UnsupportedError",
    "BackendUnavailableError",
    "OutOfMemoryError",
    "WorkspaceTooSmallError",
    "MisalignedError",
    "SizeOverflowError",
    "HandleBusyError",
    "DeviceError",
    "AbiMismatchError",
    "InternalError",
]


def backends() -> list:
    """Known backends: dicts with name, available, reason (why not), device_count, library."""
    return list(_spmla.backends())


def info() -> Dict[str, Any]:
    """Versions, backends and devices, as a dict (``python -c "import spmla;
    print(spmla.info())"``).

    Keys: ``version`` (library), ``abi_version`` ("major.minor"), ``header_version`` (the
    header the extension was compiled against), ``package_dir``, ``backends`` (each with a
    ``devices`` list of device-property dicts when available).
    """
    import os

    abi = _spmla.abi_version()
    result: Dict[str, Any] = {
        "version": _spmla.version_string(),
        "abi_version": f"{abi >> 16}.{abi & 0xFFFF}",
        "header_version": _spmla.HEADER_VERSION,
        "package_dir": os.path.dirname(os.path.abspath(__file__)),
        "backends": [],
    }
    for b in backends():
        entry = dict(b)
        devices = []
        if b["available"]:
            for d in range(int(b["device_count"])):
                try:
                    devices.append(_spmla.device_info(b["name"], d))
                except Error as e:  # a device that cannot be queried is reported, not fatal
                    devices.append({"error": str(e)})
        entry["devices"] = devices
        result["backends"].append(entry)
    return result
