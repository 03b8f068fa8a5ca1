"""DeepSeek-V4.1 caches (``"v41_fp8"``, ``"v41_fp4"``; ABI 1.2) in both arrangements: page sizes,
kv_cache_store bytes against an independent numpy implementation of the published quantization
recipe, kv_cache_gather, and sparse_attention over V41 caches against a float64 reference.

The recipe (docs/SPEC.md "V4.1 cache layouts", from FlashMLA's tests/quant.py of 2026-09-10
(page-blocked) and 2026-09-30 (per token)), written here with numpy and ml_dtypes, independent of
spmla's C++ code:

* V41_FP8: per tile of 32 of all 512 dims, ``scale = 2^ceil(log2(max(amax / 448, 1e-4)))`` (the
  ratio in fp32; the ceiling taken exactly, docs/SEMANTICS.md), UE8M0 byte ``= exponent + 127``,
  values ``e4m3(x / scale)`` rounded to nearest even.
* V41_FP4: per tile of 16, ``scale = e4m3_rne(clamp(amax / 6, 2^-9, 448))``, codes
  ``e2m1_rne_satfinite(x / float(scale))``, element i in byte i // 2 (even i in the low nibble);
  a tile holding NaN or inf gets the scale byte 0x7F and unspecified codes.
* per token: each token's data bytes then its scale bytes; page-blocked: ``block_size`` data rows,
  then ``block_size`` scale rows, the page rounded up to a multiple of 512 bytes (zero padding).
"""

from __future__ import annotations

import math
import zlib

import ml_dtypes
import numpy as np
import pytest

import spmla

LAYOUTS = ("v41_fp8", "v41_fp4")
ARRANGEMENTS = ("per_token", "page_blocked")
DATA = {"v41_fp8": 512, "v41_fp4": 256}
SCALES = {"v41_fp8": 16, "v41_fp4": 32}


def bf16(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16)


def packed(layout: str, arrangement: str, bs: int) -> int:
    tok = DATA[layout] + SCALES[layout]
    return tok * bs if arrangement == "per_token" else -(-tok * bs // 512) * 512


# ---- the recipe in numpy ----------------------------------------------------------------------
def _e4m3fn_values() -> np.ndarray:
    return np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)


def _e4m3_rne(r: np.ndarray) -> np.ndarray:
    """E4M3FN bytes of non-negative finite r <= 448: nearest value, ties to the even code."""
    vals = _e4m3fn_values()[:0x7F]  # codes 0x00 .. 0x7E, ascending
    d = np.abs(r[..., None].astype(np.float64) - vals)
    best = d.min(axis=-1, keepdims=True)
    cand = np.where(d == best, np.arange(0x7F), 1 << 20)
    even = np.where(cand % 2 == 0, cand, 1 << 20).min(axis=-1)
    return np.where(even < (1 << 20), even, cand.min(axis=-1)).astype(np.uint8)


_E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float64)


def _e2m1_rne_satfinite(y: np.ndarray) -> np.ndarray:
    a = np.minimum(np.abs(y.astype(np.float64)), 6.0)
    d = np.abs(a[..., None] - _E2M1)
    best = d.min(axis=-1, keepdims=True)
    cand = np.where(d == best, np.arange(8), 99)
    even = np.where(cand % 2 == 0, cand, 99).min(axis=-1)
    code = np.where(even < 99, even, cand.min(axis=-1))
    return (code | np.where(np.signbit(y), 8, 0)).astype(np.uint8)


def quantize_tokens(layout: str, kv: np.ndarray):
    """(data [N, DATA], scales [N, SCALES], dont_care [N, DATA] bool) of bf16 rows kv [N, 512]."""
    x = kv.astype(np.float32)
    n = x.shape[0]
    if layout == "v41_fp8":
        t = x.reshape(n, 16, 32)
        amax = np.abs(t).max(axis=-1)
        ratio = np.maximum(amax / np.float32(448.0), np.float32(1e-4)).astype(np.float32)
        m, e = np.frexp(ratio.astype(np.float64))
        k = np.where(m == 0.5, e - 1, e)
        scale = np.ldexp(np.float32(1.0), k).astype(np.float32)
        vals = (t / scale[..., None]).astype(np.float32).astype(ml_dtypes.float8_e4m3fn)
        return vals.view(np.uint8).reshape(n, 512), (k + 127).astype(np.uint8), np.zeros((n, 512), bool)
    t = x.reshape(n, 32, 16)
    bad = ~np.isfinite(t).all(axis=-1)
    amax = np.where(np.isfinite(t), np.abs(t), 0).max(axis=-1)
    r = np.clip((amax / np.float32(6.0)).astype(np.float32), 2.0 ** -9, 448.0)
    sb = np.where(bad, 0x7F, _e4m3_rne(r)).astype(np.uint8)
    s = sb.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    with np.errstate(invalid="ignore"):
        codes = _e2m1_rne_satfinite((t / s[..., None]).astype(np.float32)).reshape(n, 512)
    data = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    dont_care = np.repeat(bad, 8, axis=-1)  # 16 codes = 8 bytes per tile
    return data, sb, dont_care


def arrange(layout: str, arrangement: str, bs: int, pages: int, data, scales, dont_care):
    """Page bytes [pages, page] (and a care mask) of tokens 0 .. pages*bs-1 in slot order."""
    pb = packed(layout, arrangement, bs)
    out = np.zeros((pages, pb), np.uint8)
    care = np.ones((pages, pb), bool)
    db, sc = DATA[layout], SCALES[layout]
    for s in range(pages * bs):
        p, o = divmod(s, bs)
        if arrangement == "per_token":
            d0, s0 = o * (db + sc), o * (db + sc) + db
        else:
            d0, s0 = o * db, bs * db + o * sc
        out[p, d0:d0 + db] = data[s]
        care[p, d0:d0 + db] = ~dont_care[s]
        out[p, s0:s0 + sc] = scales[s]
    return out, care


def dequantize(layout: str, data: np.ndarray, scales: np.ndarray) -> np.ndarray:
    n = data.shape[0]
    if layout == "v41_fp8":
        v = data.view(ml_dtypes.float8_e4m3fn).astype(np.float64).reshape(n, 16, 32)
        return (v * np.ldexp(1.0, scales.astype(np.int64) - 127)[..., None]).reshape(n, 512)
    codes = np.stack([data & 15, data >> 4], axis=-1).reshape(n, 512)
    mag = _E2M1[codes & 7] * np.where(codes & 8, -1.0, 1.0)
    s = scales.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    return (mag.reshape(n, 32, 16) * s[..., None]).reshape(n, 512)


def random_rows(rng, n: int) -> np.ndarray:
    mags = np.ldexp(1.0, rng.integers(-16, 11, size=(n, 32, 1)))
    x = (rng.standard_normal((n, 32, 16)) * mags).reshape(n, 512)
    x[0, :16] = 0  # a zero tile
    x[0, 16:32] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2  # E2M1 midpoints, scale 1
    return bf16(x)


# ---- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_page_bytes(layout, arrangement):
    for bs in (1, 2, 3, 5, 53, 64, 256):
        assert spmla.page_bytes(layout, bs, arrangement=arrangement) == packed(layout, arrangement, bs)
        assert spmla.page_bytes(spmla.Layout[layout.upper()], bs,
                                arrangement=spmla.Arrangement[arrangement.upper()]) == \
            packed(layout, arrangement, bs)
    assert spmla.page_bytes("v41_fp8", 64, arrangement="per_token") == 64 * 528
    assert spmla.page_bytes("v41_fp4", 64, arrangement="page_blocked") == 18432


def test_arrangement_is_required_and_checked():
    with pytest.raises(spmla.InvalidArgumentError, match="arrangement: expected PER_TOKEN or PAGE_BLOCKED"):
        spmla.page_bytes("v41_fp8", 64)
    with pytest.raises(spmla.InvalidArgumentError, match="arrangement"):
        spmla.page_bytes("v41_fp4", 64, arrangement="sideways")
    with pytest.raises(spmla.InvalidArgumentError, match="has only that arrangement"):
        spmla.page_bytes("v4_fp8", 64, arrangement="per_token")
    assert spmla.page_bytes("v4_fp8", 64, arrangement="page_blocked") == spmla.page_bytes("v4_fp8", 64)
    with pytest.raises(spmla.InvalidArgumentError, match="E4M3FN"):
        spmla.page_bytes("v41_fp4", 64, arrangement="per_token", fp8_flavor="e4m3fnuz")
    with pytest.raises(spmla.InvalidArgumentError, match="arrangement"):
        spmla.KVCache(np.zeros((2, 64 * 528), np.uint8), "v41_fp8", block_size=64).num_pages
    # a page stride that fits per token but not page-blocked
    with pytest.raises(spmla.InvalidArgumentError, match="page_stride_bytes"):
        spmla.KVCache(np.zeros((2, 3 * 288), np.uint8), "v41_fp4", block_size=3,
                      arrangement="page_blocked").num_pages
    c = spmla.KVCache(np.zeros((2, 1024), np.uint8), "v41_fp4", block_size=3, arrangement="blocked")
    assert (c.num_pages, c.page_bytes, c.dim, c.arrangement) == (2, 1024, 512,
                                                                spmla.Arrangement.PAGE_BLOCKED)
    assert "arrangement='page_blocked'" in repr(c)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
@pytest.mark.parametrize("bs", [1, 5, 64])
def test_store_bytes_equal_the_recipe(layout, arrangement, bs):
    rng = np.random.default_rng(zlib.crc32(f"{layout}/{arrangement}/{bs}".encode()))
    pages = 3 if bs > 1 else 11
    n = pages * bs
    kv = random_rows(rng, n)
    if layout == "v41_fp4":
        kv[min(1, n - 1), 100] = np.nan  # tile 6 of one token: scale NaN, codes unspecified
    data_bytes, scales, dont_care = quantize_tokens(layout, kv)
    want, care = arrange(layout, arrangement, bs, pages, data_bytes, scales, dont_care)

    pb = packed(layout, arrangement, bs)
    buf = np.full((pages, pb), 0xEE, np.uint8)
    cache = spmla.KVCache(buf, layout, block_size=bs, arrangement=arrangement)
    perm = rng.permutation(n).astype(np.int32)  # every slot, in shuffled order
    spmla.kv_cache_store(kv[perm], perm, cache)
    diff = np.argwhere(care & (buf != want))
    assert diff.size == 0, f"first differing byte (page, offset): {diff[:4].tolist()}"

    # gather: the recipe's dequantization, exactly (bf16 holds every product); invalid -> 0
    slots = np.concatenate([[-1, n, 2**31 - 1], perm[: min(n, 40)]]).astype(np.int32)
    out = np.asarray(spmla.kv_cache_gather(cache, slots)).astype(np.float64)
    assert (out[:3] == 0).all()
    ref = dequantize(layout, data_bytes[slots[3:]], scales[slots[3:]])
    both_nan = np.isnan(ref) & np.isnan(out[3:])
    assert ((out[3:] == ref) | both_nan).all()


def test_store_leaves_other_slots_alone():
    rng = np.random.default_rng(5)
    for layout in LAYOUTS:
        for arrangement in ARRANGEMENTS:
            bs, pages = 4, 2
            pb = packed(layout, arrangement, bs)
            buf = np.full((pages, pb + 32), 0xEE, np.uint8)
            cache = spmla.KVCache(buf, layout, block_size=bs, arrangement=arrangement)
            kv = random_rows(rng, 1)
            spmla.kv_cache_store(kv, np.array([5], np.int32), cache)  # page 1, offset 1
            data_bytes, scales, _ = quantize_tokens(layout, kv)
            db, sc = DATA[layout], SCALES[layout]
            touched = np.zeros_like(buf, bool)
            if arrangement == "per_token":
                d0, s0 = db + sc, db + sc + db
            else:
                d0, s0 = db, bs * db + sc
            assert (buf[1, d0:d0 + db] == data_bytes[0]).all()
            assert (buf[1, s0:s0 + sc] == scales[0]).all()
            touched[1, d0:d0 + db] = touched[1, s0:s0 + sc] = True
            touched[1, (db + sc) * bs:pb] = True  # the page's rounding (page-blocked), zeroed
            assert (buf[1, (db + sc) * bs:pb] == 0).all()
            assert (buf[~touched] == 0xEE).all()


def _attention_ref(q, keys, sink, scale):
    """float64 attention of q [H, 512] over key rows [n, 512] (K = V), with an optional sink."""
    if len(keys) == 0:
        return np.zeros((q.shape[0], 512)), np.full(q.shape[0], np.inf)
    k = np.asarray(keys)
    lg = scale * (q @ k.T)
    m = lg.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(lg - m).sum(axis=1, keepdims=True)))[:, 0]
    out = np.exp(lg - lse[:, None]) @ k
    if sink is not None:
        out = out / (1 + np.exp(sink.astype(np.float64) - lse))[:, None]
    return out, lse


@pytest.mark.parametrize("main_arr,extra_arr", [("per_token", "page_blocked"),
                                                ("page_blocked", "per_token")])
def test_sparse_attention_v41_fp8_window_plus_v41_fp4_compressed(main_arr, extra_arr):
    # DeepSeek-V4.1 (SPEC): V41_FP4 is the extra (compressed) cache beside a V41_FP8 window.
    rng = np.random.default_rng(41)
    T, H, K, K2 = 3, 16, 24, 40
    win_bs, cmp_bs = 8, 16
    win_n, cmp_n = 4 * win_bs, 5 * cmp_bs
    win_kv, cmp_kv = bf16(rng.standard_normal((win_n, 512))), bf16(rng.standard_normal((cmp_n, 512)))
    win = spmla.KVCache(np.zeros((4, packed("v41_fp8", main_arr, win_bs)), np.uint8), "v41_fp8",
                        block_size=win_bs, arrangement=main_arr)
    cmp = spmla.KVCache(np.zeros((5, packed("v41_fp4", extra_arr, cmp_bs)), np.uint8), "v41_fp4",
                        block_size=cmp_bs, arrangement=extra_arr)
    spmla.kv_cache_store(win_kv, np.arange(win_n, dtype=np.int32), win)
    spmla.kv_cache_store(cmp_kv, np.arange(cmp_n, dtype=np.int32), cmp)
    win_rows = dequantize("v41_fp8", *quantize_tokens("v41_fp8", win_kv)[:2])
    cmp_rows = dequantize("v41_fp4", *quantize_tokens("v41_fp4", cmp_kv)[:2])

    q = bf16(rng.standard_normal((T, H, 512)))
    idx = rng.integers(-1, win_n + 2, size=(T, K)).astype(np.int32)
    eidx = rng.integers(0, cmp_n, size=(T, K2)).astype(np.int32)
    lengths = np.array([K, 5, 0], np.int32)
    elengths = np.array([K2, 0, 17], np.int32)
    sink = rng.uniform(-1, 3, size=H).astype(np.float32)
    out, lse = spmla.sparse_attention(q, win, idx, lengths=lengths, extra_kv_cache=cmp,
                                      extra_indices=eidx, extra_lengths=elengths, attn_sink=sink)
    out = np.asarray(out).astype(np.float64)
    lse = np.asarray(lse).astype(np.float64)
    scale = 1 / math.sqrt(512)
    for t in range(T):
        keys = [win_rows[s] for s in idx[t, :lengths[t]] if 0 <= s < win_n]
        keys += [cmp_rows[s] for s in eidx[t, :elengths[t]] if 0 <= s < cmp_n]
        ro, rl = _attention_ref(q[t].astype(np.float64), keys, sink, scale)
        if not keys:
            assert (out[t] == 0).all() and np.isinf(lse[t]).all()
            continue
        assert np.linalg.norm(out[t] - ro) / np.linalg.norm(ro) < 1e-2
        assert np.abs(lse[t] - rl).max() < 1e-3 * max(1.0, np.abs(rl).max())


def test_flashmla_style_views_of_both_arrangements():
    # Per token: FlashMLA's kernel view [num_blocks, block_size, 1, bytes_per_token] is the packed
    # page itself. Page-blocked: the page is padded to 512 bytes, so only the padded page buffer
    # (or a view of it) holds a whole page; an unpadded [bs, 1, 288] view is refused, as V4_FP8's is.
    rng = np.random.default_rng(7)
    bs, pages = 5, 3
    kv = random_rows(rng, pages * bs)
    slots = np.arange(pages * bs, dtype=np.int32)
    tok = np.zeros((pages, bs, 1, 288), np.uint8)
    spmla.kv_cache_store(kv, slots, spmla.KVCache(tok, "v41_fp4", block_size=bs, arrangement="per_token"))
    blk = np.zeros((pages, packed("v41_fp4", "page_blocked", bs)), np.uint8)
    spmla.kv_cache_store(kv, slots, spmla.KVCache(blk, "v41_fp4", block_size=bs, arrangement="page_blocked"))
    d, s, _ = quantize_tokens("v41_fp4", kv)
    assert (tok.reshape(pages, -1) == arrange("v41_fp4", "per_token", bs, pages, d, s, np.zeros_like(d, bool))[0]).all()
    assert (blk == arrange("v41_fp4", "page_blocked", bs, pages, d, s, np.zeros_like(d, bool))[0]).all()
    # the same bytes read back through either descriptor give the same rows
    a = np.asarray(spmla.kv_cache_gather(spmla.KVCache(tok, "v41_fp4", block_size=bs, arrangement="per_token"), slots))
    b = np.asarray(spmla.kv_cache_gather(spmla.KVCache(blk, "v41_fp4", block_size=bs, arrangement="page_blocked"), slots))
    assert (a.view(np.uint16) == b.view(np.uint16)).all()
    # reading per-token bytes as page-blocked is a different (wrong) cache: never guessed
    wide = np.zeros((pages, packed("v41_fp4", "page_blocked", bs)), np.uint8)
    wide[:, :bs * 288] = tok.reshape(pages, -1)
    c = np.asarray(spmla.kv_cache_gather(spmla.KVCache(wide, "v41_fp4", block_size=bs, arrangement="page_blocked"), slots))
    assert not (c.view(np.uint16) == a.view(np.uint16)).all()
    with pytest.raises(spmla.InvalidArgumentError, match="rows of at least 1536 bytes"):
        spmla.KVCache(np.zeros((pages, 2048), np.uint8)[:, :bs * 288], "v41_fp4", block_size=bs,
                      arrangement="page_blocked").num_pages
