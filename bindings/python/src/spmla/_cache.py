"""KVCache: a paged KV-cache descriptor over memory of any framework."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _spmla
from ._errors import InvalidArgumentError, SizeOverflowError
from ._runtime import Call, framework_of, guarded_allocation, unwrap
from ._types import Arrangement, FP8Flavor, Layout, as_arrangement, as_flavor, as_layout

__all__ = ["KVCache", "page_bytes"]

_FIXED_DIM = {Layout.V32_FP8: 576, Layout.V4_FP8: 512, Layout.V41_FP8: 512, Layout.V41_FP4: 512}
_DEFAULT = object()


def _flavor_for(layout: Layout, fp8_flavor: Any) -> FP8Flavor:
    if fp8_flavor is _DEFAULT:
        return FP8Flavor.NONE if layout is Layout.BF16 else FP8Flavor.E4M3FN
    return as_flavor(fp8_flavor)


def page_bytes(layout: Any, block_size: int, *, head_dim: int = 0,
               fp8_flavor: Any = _DEFAULT, arrangement: Any = None) -> int:
    """Bytes of one packed page of ``block_size`` tokens in ``layout``.

    BF16 ``2*D*bs``; FP8_PER_TENSOR ``D*bs``; V32_FP8 ``656*bs``; V4_FP8 ``584*bs`` rounded up to
    a multiple of 576; INDEXER_FP8 ``(D + 4)*bs`` (D = ``head_dim``; V32/V4 imply theirs);
    V41_FP8 ``528*bs`` and V41_FP4 ``288*bs`` with ``arrangement="per_token"``, the same rounded
    up to a multiple of 512 with ``arrangement="page_blocked"`` (the V41 layouts need one).
    """
    lay = as_layout(layout)
    return int(_spmla.page_bytes(int(lay), int(block_size), int(head_dim),
                                 int(_flavor_for(lay, fp8_flavor)),
                                 int(as_arrangement(arrangement))))


def _count(name: str, value: Any, lowest: int) -> int:
    """An integer argument of KVCache, >= ``lowest`` (a negative num_pages is not "all", and a
    page stride of 0 would mean "packed" to the C library, whatever the array's stride)."""
    try:
        v = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(
            f"spmla.KVCache: {name}: expected an integer, got {value!r}") from None
    if v != value or v < lowest:
        extra = " or None: as many as the array holds" if name == "num_pages" else \
            " or None: the array's first stride"
        raise InvalidArgumentError(
            f"spmla.KVCache: {name}: expected an integer >= {lowest}{extra}, got {value!r}")
    if v >= 1 << 62:
        raise SizeOverflowError(f"spmla.KVCache: {name}: expected < 2^62, got {v}")
    return v


class KVCache:
    """A paged KV cache: ``num_pages`` pages of ``block_size`` tokens in one layout, over memory
    the caller owns (torch, cupy, jax, numpy or any DLPack / buffer-protocol array).

    Slot id ``s`` is token ``s % block_size`` of page ``s // block_size``. The memory is read and
    written in place, never copied. Accepted shapes of ``data``:

    * ``[num_pages, ...]`` whose dimensions after the first hold one page contiguously (e.g.
      ``uint8 [num_pages, page_bytes]``, FlashMLA's ``[num_pages, block_size, 1, 656]`` view, or
      ``bf16 [num_pages, block_size, D]`` for the BF16 layout); the page stride is the first
      dimension's stride and may exceed the page (padding, e.g. ``data[:, :page_bytes]`` of a
      wider buffer). Each row must hold a whole packed page: a V4_FP8 page is ``584*block_size``
      bytes rounded up to a multiple of 576 and kv_cache_store writes the rounding, so FlashMLA's
      ``[pages, bs, 1, 584]`` kernel view is refused; hand over the padded page buffer.
    * a flat contiguous buffer: pages are ``page_stride_bytes`` apart (default: packed).

    Every byte the cache spans (page stride x num_pages, by the C library's
    ``spmla_kv_cache_size_bytes``) lies inside ``data``; broadcast (stride 0), negative-stride
    and overlapping views are refused with :class:`InvalidArgumentError`.

    Args:
        data: the page memory.
        layout: ``"bf16"``, ``"fp8_per_tensor"``, ``"v32_fp8"`` (DeepSeek-V3.2 fp8_ds_mla, D 576),
            ``"v4_fp8"`` (DeepSeek-V4, D 512), ``"indexer_fp8"`` (lightning indexer),
            ``"v41_fp8"`` (DeepSeek-V4.1, 528 B/token: 512 E4M3 + 16 UE8M0 scales) and
            ``"v41_fp4"`` (DeepSeek-V4.1, 288 B/token: 512 E2M1 + 32 E4M3FN scales), or a
            :class:`Layout`.
        block_size: tokens per page (>= 1).
        fp8_flavor: ``"e4m3fn"`` (OCP; the default for FP8 layouts) or ``"e4m3fnuz"``; always
            explicit in the descriptor, never guessed from the device. ``None`` for BF16.
            V41_FP4 takes ``"e4m3fn"`` only (its scales).
        arrangement: the V41 layouts' page arrangement, required for them and never guessed:
            ``"per_token"`` (each token's data then its scales; FlashMLA from 2026-09-30) or
            ``"page_blocked"`` (block_size data rows, then block_size scale rows, the page
            rounded up to 512 bytes; FlashMLA of 2026-09-10), or an :class:`Arrangement`.
            ``None`` (the default) for the other layouts.
        head_dim: D (576 or 512; Di 64 or 128 for the indexer). 0 = the layout's own.
        num_pages: default: as many as the array holds (whole pages only); >= 0.
        page_stride_bytes: default: from the array's first stride, or packed for a flat buffer;
            > 0 and at least one packed page.
        scale: FP8_PER_TENSOR only: dequantised value = fp8 * scale.
    """

    def __init__(self, data: Any, layout: Any, *, block_size: int, fp8_flavor: Any = _DEFAULT,
                 head_dim: int = 0, num_pages: Optional[int] = None,
                 page_stride_bytes: Optional[int] = None, scale: float = 1.0,
                 arrangement: Any = None) -> None:
        if data is None:
            raise InvalidArgumentError("KVCache: data is None")
        self.data = data
        self.layout = as_layout(layout)
        self.fp8_flavor = _flavor_for(self.layout, fp8_flavor)
        self.block_size = int(block_size)
        self.head_dim = int(head_dim)
        self._num_pages = None if num_pages is None else _count("num_pages", num_pages, 0)
        self._page_stride = (None if page_stride_bytes is None
                             else _count("page_stride_bytes", page_stride_bytes, 1))
        self.scale = float(scale)
        self.arrangement = as_arrangement(arrangement)

    @classmethod
    def zeros(cls, layout: Any, num_pages: int, block_size: int, *, fp8_flavor: Any = _DEFAULT,
              head_dim: int = 0, scale: float = 1.0, like: Any = None,
              arrangement: Any = None) -> "KVCache":
        """A zero-filled cache of packed pages, allocated as ``uint8 [num_pages, page_bytes]``
        by the framework of ``like`` (numpy when None; torch on ``like.device``; cupy)."""
        lay = as_layout(layout)
        pb = page_bytes(lay, block_size, head_dim=head_dim, fp8_flavor=fp8_flavor,
                        arrangement=arrangement)
        fn = "spmla.KVCache.zeros"
        pages = _count("num_pages", num_pages, 0)
        nbytes = pages * pb
        if nbytes >= 1 << 63:
            raise SizeOverflowError(f"{fn}: num_pages: expected num_pages * {pb} bytes below "
                                    f"2^63, got {pages} pages")
        shape = (pages, pb)
        fw = framework_of(like) if like is not None else "numpy"

        def make() -> Any:
            if fw == "torch":
                import torch

                return torch.zeros(shape, dtype=torch.uint8, device=unwrap(like).device)
            if fw == "cupy":
                import cupy

                return cupy.zeros(shape, dtype=np.uint8)
            return np.zeros(shape, dtype=np.uint8)

        data = guarded_allocation(fn, "data", nbytes, make)
        return cls(data, lay, block_size=block_size, fp8_flavor=fp8_flavor, head_dim=head_dim,
                   scale=scale, arrangement=arrangement)

    @property
    def dim(self) -> int:
        """D: values per token (576 for V32_FP8, 512 for V4_FP8 and the V41 layouts, else
        head_dim)."""
        return _FIXED_DIM.get(self.layout, self.head_dim) if self.head_dim == 0 else self.head_dim

    def _view(self, call: Call, name: str, writable: bool = False) -> Any:
        data = call.raw_view(self.data, name, writable=writable)
        return _spmla.Cache(data, int(self.layout), int(self.fp8_flavor), self.head_dim,
                            -1 if self._num_pages is None else self._num_pages, self.block_size,
                            -1 if self._page_stride is None else self._page_stride, self.scale,
                            int(self.arrangement))

    def _describe(self) -> Any:
        """The resolved descriptor, validated (num_pages, page_stride_bytes, page_bytes)."""
        call = Call(self.data, None, None)
        return self._view(call, "cache")

    @property
    def num_pages(self) -> int:
        return int(self._describe().num_pages)

    @property
    def page_stride_bytes(self) -> int:
        return int(self._describe().page_stride_bytes)

    @property
    def page_bytes(self) -> int:
        """Bytes of one packed page of this layout."""
        return page_bytes(self.layout, self.block_size, head_dim=self.head_dim,
                          fp8_flavor=self.fp8_flavor, arrangement=self.arrangement)

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.block_size

    def _geometry(self) -> tuple:
        return (self.layout, self.fp8_flavor, self.head_dim, self.block_size, self._num_pages,
                self._page_stride, self.scale, self.arrangement)

    def __repr__(self) -> str:
        arr = ("" if self.arrangement is Arrangement.DEFAULT
               else f"arrangement={self.arrangement.name.lower()!r}, ")
        return (f"spmla.KVCache(layout={self.layout.name.lower()!r}, "
                f"fp8_flavor={self.fp8_flavor.name.lower()!r}, {arr}block_size={self.block_size}, "
                f"dim={self.dim}, data={type(unwrap(self.data)).__name__})")
