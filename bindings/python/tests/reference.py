"""A numpy reference of docs/SPEC.md, written for this test suite.

It is independent of spmla's C reference backend (FP8 decoding and encoding come from ml_dtypes,
the layouts are implemented from docs/SPEC.md's tables), so the two references check each other.
Everything works on host numpy arrays; caches are ``uint8 [num_pages, page_stride]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import ml_dtypes
import numpy as np

FP8_DTYPES = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e4m3fnuz": ml_dtypes.float8_e4m3fnuz}
FP8_MAX = {"e4m3fn": 448.0, "e4m3fnuz": 240.0}

# Layout geometry (docs/SPEC.md "KV cache layouts").
V32_TOKEN_BYTES, V32_NOPE, V32_TILE, V32_SCALE_OFF, V32_ROPE_OFF = 656, 512, 128, 512, 528
V4_DATA_BYTES, V4_SCALE_BYTES, V4_NOPE, V4_TILE, V4_SCALES = 576, 8, 448, 64, 7
D_V = 512


# ------------------------------------------------------------------------------------------------
# Number formats


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round to nearest even (ml_dtypes' cast)."""
    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def bf16_round(x: np.ndarray) -> np.ndarray:
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


def fp8_decode(b: np.ndarray, flavor: str) -> np.ndarray:
    return np.asarray(b, dtype=np.uint8).view(FP8_DTYPES[flavor]).astype(np.float32)


def fp8_encode(x: np.ndarray, flavor: str) -> np.ndarray:
    """round_to_nearest_even(x), saturated to +-max finite; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float32)
    m = np.float32(FP8_MAX[flavor])
    clipped = np.where(np.isnan(x), x, np.clip(x, -m, m))
    with np.errstate(invalid="ignore"):
        return clipped.astype(FP8_DTYPES[flavor]).view(np.uint8)


def ue8m0_decode(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint8)
    with np.errstate(over="ignore"):
        out = np.ldexp(np.float32(1.0), b.astype(np.int32) - 127).astype(np.float32)
    return np.where(b == 255, np.float32(np.nan), out)


def pow2_scale_exponent(amax: float, fp8_max: float) -> int:
    """e with 2^e = 2^ceil(log2(max(amax / fp8_max, 1e-4))), computed exactly on the fp32 ratio."""
    r = np.float32(amax) / np.float32(fp8_max)
    r = max(r, np.float32(1e-4))
    m, e = np.frexp(np.float32(r))
    return int(e - 1) if m == 0.5 else int(e)


# ------------------------------------------------------------------------------------------------
# Caches


@dataclass
class RefCache:
    """A host copy of a cache: bytes [num_pages, page_stride]."""

    data: np.ndarray
    layout: str  # bf16, fp8_per_tensor, v32_fp8, v4_fp8, indexer_fp8
    block_size: int
    dim: int
    flavor: str = "e4m3fn"
    scale: float = 1.0

    @property
    def num_pages(self) -> int:
        return self.data.shape[0]

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.block_size


def packed_page_bytes(layout: str, block_size: int, dim: int) -> int:
    if layout == "bf16":
        return 2 * dim * block_size
    if layout == "fp8_per_tensor":
        return dim * block_size
    if layout == "v32_fp8":
        return V32_TOKEN_BYTES * block_size
    if layout == "v4_fp8":
        raw = (V4_DATA_BYTES + V4_SCALE_BYTES) * block_size
        return -(-raw // V4_DATA_BYTES) * V4_DATA_BYTES
    if layout == "indexer_fp8":
        return (dim + 4) * block_size
    raise ValueError(layout)


def layout_dim(layout: str, head_dim: int = 0) -> int:
    return {"v32_fp8": 576, "v4_fp8": 512}.get(layout, head_dim)


def quantize_token(x: np.ndarray, layout: str, flavor: str, scale: float = 1.0):
    """Bytes of one token row from its float32 values (bf16-exact). Returns (data bytes, scale
    bytes or None) — the V4 layout keeps its scales in a separate row."""
    x = np.asarray(x, dtype=np.float32)
    fmax = FP8_MAX[flavor] if layout != "bf16" else None
    if layout == "bf16":
        return f32_to_bf16_bits(x).view(np.uint8), None
    if layout == "fp8_per_tensor":
        return fp8_encode(x / np.float32(scale), flavor), None
    if layout == "v32_fp8":
        out = np.zeros(V32_TOKEN_BYTES, dtype=np.uint8)
        scales = np.zeros(4, dtype=np.float32)
        for i in range(4):
            tile = x[i * V32_TILE:(i + 1) * V32_TILE]
            e = pow2_scale_exponent(float(np.max(np.abs(tile))), fmax)
            scales[i] = np.ldexp(np.float32(1.0), e)
            out[i * V32_TILE:(i + 1) * V32_TILE] = fp8_encode(tile / scales[i], flavor)
        out[V32_SCALE_OFF:V32_ROPE_OFF] = scales.view(np.uint8)
        out[V32_ROPE_OFF:] = f32_to_bf16_bits(x[V32_NOPE:576]).view(np.uint8)
        return out, None
    if layout == "v4_fp8":
        data = np.zeros(V4_DATA_BYTES, dtype=np.uint8)
        sc = np.zeros(V4_SCALE_BYTES, dtype=np.uint8)
        for i in range(V4_SCALES):
            tile = x[i * V4_TILE:(i + 1) * V4_TILE]
            e = pow2_scale_exponent(float(np.max(np.abs(tile))), fmax)
            sc[i] = e + 127
            data[i * V4_TILE:(i + 1) * V4_TILE] = fp8_encode(tile / np.ldexp(np.float32(1.0), e),
                                                             flavor)
        data[V4_NOPE:] = f32_to_bf16_bits(x[V4_NOPE:512]).view(np.uint8)
        return data, sc
    if layout == "indexer_fp8":
        # SPEC: scale = amax / fp8_max; it is silent on tiny rows, where the anchor (vLLM's
        # indexer_k_quant_and_cache) floors amax at 1e-4 before the division.
        amax = max(np.float32(np.max(np.abs(x))), np.float32(1e-4))
        s = np.float32(amax / np.float32(fmax))
        q = fp8_encode(x / s, flavor)
        return q, np.array([s], dtype=np.float32).view(np.uint8)
    raise ValueError(layout)


def store(cache: RefCache, kv_bits: np.ndarray, slots: Sequence[int]) -> None:
    """kv_cache_store: kv as bf16 bit patterns [N, D]; negative / out-of-range slots skipped."""
    kv = bf16_bits_to_f32(kv_bits)
    bs, d = cache.block_size, cache.dim
    for n, s in enumerate(np.asarray(slots).tolist()):
        if s < 0 or s >= cache.num_slots:
            continue
        page, off = divmod(int(s), bs)
        data, extra = quantize_token(kv[n], cache.layout, cache.flavor, cache.scale)
        row = cache.data[page]
        if cache.layout == "bf16":
            row[off * 2 * d:(off + 1) * 2 * d] = data
        elif cache.layout == "fp8_per_tensor":
            row[off * d:(off + 1) * d] = data
        elif cache.layout == "v32_fp8":
            row[off * V32_TOKEN_BYTES:(off + 1) * V32_TOKEN_BYTES] = data
        elif cache.layout == "v4_fp8":
            row[off * V4_DATA_BYTES:(off + 1) * V4_DATA_BYTES] = data
            so = bs * V4_DATA_BYTES + off * V4_SCALE_BYTES
            row[so:so + V4_SCALES] = extra[:V4_SCALES]  # the pad byte is not part of the layout
        elif cache.layout == "indexer_fp8":
            row[off * d:(off + 1) * d] = data
            so = bs * d + off * 4
            row[so:so + 4] = extra


def dequant_all(cache: RefCache) -> np.ndarray:
    """Every slot's dequantised row, float32 [num_slots, D]."""
    bs, d = cache.block_size, cache.dim
    n = cache.num_pages
    pages = cache.data
    if cache.layout == "bf16":
        tok = pages[:, :bs * 2 * d].reshape(n, bs, 2 * d).copy().view(np.uint16)
        return bf16_bits_to_f32(tok).reshape(n * bs, d)
    if cache.layout == "fp8_per_tensor":
        tok = pages[:, :bs * d].reshape(n * bs, d)
        return fp8_decode(tok, cache.flavor) * np.float32(cache.scale)
    if cache.layout == "v32_fp8":
        tok = pages[:, :bs * V32_TOKEN_BYTES].reshape(n * bs, V32_TOKEN_BYTES)
        nope = fp8_decode(tok[:, :V32_NOPE], cache.flavor)
        scales = tok[:, V32_SCALE_OFF:V32_ROPE_OFF].copy().view(np.float32)  # [S, 4]
        nope = nope * np.repeat(scales, V32_TILE, axis=1)
        rope = bf16_bits_to_f32(tok[:, V32_ROPE_OFF:].copy().view(np.uint16))
        return np.concatenate([nope, rope], axis=1)
    if cache.layout == "v4_fp8":
        data = pages[:, :bs * V4_DATA_BYTES].reshape(n * bs, V4_DATA_BYTES)
        sc = pages[:, bs * V4_DATA_BYTES:bs * (V4_DATA_BYTES + V4_SCALE_BYTES)]
        sc = sc.reshape(n * bs, V4_SCALE_BYTES)[:, :V4_SCALES]
        nope = fp8_decode(data[:, :V4_NOPE], cache.flavor)
        nope = nope * np.repeat(ue8m0_decode(sc), V4_TILE, axis=1)
        rope = bf16_bits_to_f32(data[:, V4_NOPE:].copy().view(np.uint16))
        return np.concatenate([nope, rope], axis=1)
    if cache.layout == "indexer_fp8":
        k = pages[:, :bs * d].reshape(n * bs, d)
        s = pages[:, bs * d:bs * (d + 4)].copy().view(np.float32).reshape(n * bs)
        return fp8_decode(k, cache.flavor) * s[:, None]
    raise ValueError(cache.layout)


def gather(cache: RefCache, slots: np.ndarray) -> np.ndarray:
    """kv_cache_gather: bf16 bit patterns [N, D]; invalid slots give zero rows."""
    full = dequant_all(cache)
    out = np.zeros((len(slots), cache.dim), dtype=np.float32)
    for n, s in enumerate(np.asarray(slots).tolist()):
        if 0 <= s < cache.num_slots:
            out[n] = full[s]
    return f32_to_bf16_bits(out)


# ------------------------------------------------------------------------------------------------
# 1. sparse attention


def sparse_attention(q: np.ndarray, sources: List[Tuple[RefCache, np.ndarray, Optional[np.ndarray]]],
                     attn_sink: Optional[np.ndarray] = None, scale: Optional[float] = None):
    """q: float32 [T, H, Dqk] (bf16 values); sources: (cache, indices [T, K], lengths [T] or
    None). Returns float64 (out [T, H, 512], lse [T, H], max_logits [T, H])."""
    T, H, dqk = q.shape
    scale = 1.0 / np.sqrt(dqk) if not scale else float(scale)
    fulls = [dequant_all(c).astype(np.float64) for c, _, _ in sources]
    out = np.zeros((T, H, D_V))
    lse = np.full((T, H), np.inf)
    mx = np.full((T, H), -np.inf)
    for t in range(T):
        rows = []
        for (cache, idx, lens), full in zip(sources, fulls):
            K = idx.shape[1]
            L = K if lens is None else int(min(max(int(lens[t]), 0), K))
            for k in range(L):
                s = int(idx[t, k])
                if 0 <= s < cache.num_slots:
                    rows.append(full[s, :dqk])
        if not rows:
            continue
        kmat = np.stack(rows)  # [J, Dqk]
        logits = scale * (q[t].astype(np.float64) @ kmat.T)  # [H, J]
        m = logits.max(axis=1)
        l = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
        p = np.exp(logits - l[:, None])
        o = p @ kmat[:, :D_V]
        if attn_sink is not None:
            with np.errstate(over="ignore"):
                o = o / (1.0 + np.exp(attn_sink.astype(np.float64) - l))[:, None]
        out[t], lse[t], mx[t] = o, l, m
    return out, lse, mx


# ------------------------------------------------------------------------------------------------
# 2. indices_to_slots   3. window_indices


def _slot(table: np.ndarray, req: int, p: int, bs: int) -> int:
    page_idx = p // bs
    if page_idx >= table.shape[1]:
        return -1
    entry = int(table[req, page_idx])
    return -1 if entry < 0 else entry * bs + p % bs


def indices_to_slots(positions, token_to_req, block_table, bs, token_valid=None):
    T, K = positions.shape
    R = block_table.shape[0]
    slots = np.full((T, K), -1, dtype=np.int32)
    for t in range(T):
        req = int(token_to_req[t])
        if (token_valid is not None and not token_valid[t]) or not (0 <= req < R):
            continue
        for k in range(K):
            p = int(positions[t, k])
            if p >= 0:
                slots[t, k] = _slot(block_table, req, p, bs)
    lengths = (slots >= 0).sum(axis=1).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ragged = slots[slots >= 0].astype(np.int32)
    return slots, lengths, indptr, ragged


def window_indices(positions, token_to_req, block_table, bs, ratio, width):
    T = positions.shape[0]
    R = block_table.shape[0]
    slots = np.full((T, width), -1, dtype=np.int32)
    lengths = np.zeros(T, dtype=np.int32)
    for t in range(T):
        pos, req = int(positions[t]), int(token_to_req[t])
        if pos < 0 or not (0 <= req < R):
            continue
        hi = (pos + 1) // ratio
        lo = max(0, hi - width)
        lengths[t] = hi - lo
        for i, p in enumerate(range(lo, hi)):
            slots[t, i] = _slot(block_table, req, p, bs)
    return slots, lengths


# ------------------------------------------------------------------------------------------------
# 4. indexer logits   5. top-k


def indexer_logits(q8, k8, k_scale, weights, k_start, k_end, flavor):
    q = fp8_decode(q8, flavor).astype(np.float64)  # [T, Hi, Di]
    k = fp8_decode(k8, flavor).astype(np.float64)  # [S, Di]
    dots = np.einsum("thd,sd->ths", q, k) * k_scale.astype(np.float64)[None, None, :]
    val = np.einsum("th,ths->ts", weights.astype(np.float64), np.maximum(dots, 0.0))
    S = k.shape[0]
    cols = np.arange(S)[None, :]
    mask = (cols >= k_start[:, None]) & (cols < k_end[:, None])
    return np.where(mask, val, -np.inf)


def indexer_logits_paged(q8, cache: RefCache, block_table, context_lens, weights, num_cols):
    B, N, Hi, Di = q8.shape
    q = fp8_decode(q8, cache.flavor).astype(np.float64)
    full = dequant_all(cache).astype(np.float64)  # [slots, Di]
    out = np.full((B * N, num_cols), -np.inf)
    bs = cache.block_size
    for b in range(B):
        for i in range(N):
            r = b * N + i
            L = min(int(context_lens[b]) - N + i + 1, num_cols)
            for j in range(max(L, 0)):
                s = _slot(block_table, b, j, bs)
                if s < 0:
                    continue
                dots = q[b, i] @ full[s]  # [Hi]
                out[r, j] = float(weights[r].astype(np.float64) @ np.maximum(dots, 0.0))
    return out


def topk_per_row(logits, k, row_starts=None, row_ends=None, context_lens=None, next_n=1):
    R, C = logits.shape
    out = np.full((R, k), -1, dtype=np.int32)
    for r in range(R):
        if context_lens is not None:
            s, e = 0, int(context_lens[r // next_n]) - next_n + r % next_n + 1
        else:
            s = int(row_starts[r]) if row_starts is not None else 0
            e = int(row_ends[r]) if row_ends is not None else C
        s, e = max(s, 0), min(e, C)
        if e <= s:
            continue
        vals = logits[r, s:e].astype(np.float64)
        cols = np.arange(e - s)
        nan = np.isnan(vals)
        # Primary: numbers before NaN; then larger value; then smaller column.
        order = np.lexsort((cols, -np.where(nan, 0.0, vals), nan))
        chosen = np.sort(order[:k])
        out[r, :len(chosen)] = chosen
    return out
