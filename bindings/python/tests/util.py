"""Helpers of the spmla test suite: random inputs, caches filled by the numpy reference, and
comparisons with docs/SPEC.md's tolerances."""

from __future__ import annotations

import json
import pathlib
from typing import Optional

import ml_dtypes
import numpy as np

import reference as R
import spmla

NAN_BYTE = {"e4m3fn": 0x7F, "e4m3fnuz": 0x80}


def bf16(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16)


def rand_bf16(rng, shape, scale=1.0) -> np.ndarray:
    return bf16(rng.standard_normal(shape).astype(np.float32) * np.float32(scale))


def make_cache(rng, layout: str, num_pages: int, block_size: int, *, flavor: str = "e4m3fn",
               dim: Optional[int] = None, scale: float = 0.02, pad: int = 0,
               kv_scale: float = 0.5, poison=()):
    """(spmla.KVCache, RefCache) over the same bytes, every slot filled by the numpy reference's
    quantiser (independent of spmla's store). ``pad`` extra bytes per page (a multiple of 16);
    ``poison`` slots get NaN bytes (their use would poison the output)."""
    dim = R.layout_dim(layout, dim or 576)
    fl = "e4m3fn" if layout == "bf16" else flavor
    stride = R.packed_page_bytes(layout, block_size, dim) + pad
    data = np.zeros((num_pages, stride), dtype=np.uint8)
    ref = R.RefCache(data, layout, block_size, dim, flavor=fl, scale=scale)
    n = num_pages * block_size
    kv = rand_bf16(rng, (n, dim), kv_scale)
    R.store(ref, kv.view(np.uint16), np.arange(n))
    for s in poison:
        poison_slot(ref, int(s))
    cache = spmla.KVCache(data, layout, block_size=block_size,
                          fp8_flavor=None if layout == "bf16" else flavor,
                          head_dim=0 if layout in ("v32_fp8", "v4_fp8") else dim, scale=scale)
    return cache, ref


def poison_slot(ref: R.RefCache, s: int) -> None:
    """NaN in every value of slot s (and a NaN scale where the layout has one)."""
    page, off = divmod(s, ref.block_size)
    row = ref.data[page]
    bs, d = ref.block_size, ref.dim
    nb = NAN_BYTE[ref.flavor]
    if ref.layout == "bf16":
        row[off * 2 * d:(off + 1) * 2 * d] = np.frombuffer(
            np.full(d, 0x7FC0, np.uint16).tobytes(), np.uint8)
    elif ref.layout == "fp8_per_tensor":
        row[off * d:(off + 1) * d] = nb
    elif ref.layout == "v32_fp8":
        base = off * 656
        row[base:base + 512] = nb
        row[base + 512:base + 528] = np.frombuffer(np.full(4, np.nan, np.float32).tobytes(), np.uint8)
    elif ref.layout == "v4_fp8":
        row[off * 576:off * 576 + 448] = nb
        so = bs * 576 + off * 8
        row[so:so + 7] = 0xFF
    elif ref.layout == "indexer_fp8":
        row[off * d:(off + 1) * d] = nb


def assert_attention_close(out, lse, ref_out, ref_lse, max_logits=None, ref_max=None):
    """docs/SPEC.md tolerances: ||out - ref|| / ||ref|| < 1e-2, |lse - ref| < 1e-3 max(1, |ref|);
    rows with nothing attended exactly out 0, lse +inf, max_logits -inf."""
    out = np.asarray(out).astype(np.float64)
    lse = np.asarray(lse, dtype=np.float64)
    empty = np.isinf(ref_lse) & (ref_lse > 0)
    assert np.array_equal(np.isposinf(lse), empty), "lse +inf where nothing is attended, only there"
    assert np.all(out[empty] == 0.0), "rows with nothing attended must be exactly 0"
    if max_logits is not None:
        ml = np.asarray(max_logits, dtype=np.float64)
        assert np.all(np.isneginf(ml[empty]))
    full = ~empty
    assert np.all(np.isfinite(out)), "output must be finite"
    if full.any():
        a, b = out[full], ref_out[full]
        nb = np.linalg.norm(b)
        if nb > 0:
            rel = np.linalg.norm(a - b) / nb
            assert rel < 1e-2, f"relative out error {rel}"
        else:
            assert np.abs(a).max() < 1e-6
        tol = 1e-3 * np.maximum(1.0, np.abs(ref_lse[full]))
        err = np.abs(lse[full] - ref_lse[full])
        assert np.all(err < tol), f"lse error {err.max()}"
        if max_logits is not None:
            tol = 1e-3 * np.maximum(1.0, np.abs(ref_max[full]))
            assert np.all(np.abs(ml[full] - ref_max[full]) < tol)


def load_case(vectors: pathlib.Path, name: str) -> dict:
    """A FlashMLA vector case: meta plus every array (bf16 as uint16 patterns)."""
    folder = vectors / "flashmla" / name
    meta = json.loads((folder / "meta.json").read_text())
    np_dtypes = {"bf16": "<u2", "fp32": "<f4", "int32": "<i4", "uint8": "u1"}
    arrays = {}
    for a in meta["arrays"]:
        arrays[a["name"]] = np.fromfile(folder / a["file"], np_dtypes[a["dtype"]]).reshape(a["shape"])
    return {"meta": meta, **arrays}
