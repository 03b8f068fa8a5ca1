"""indices_to_slots, window_indices, indexer_logits(_paged), topk_per_row, kv_cache_store and
kv_cache_gather against the numpy reference."""

import ml_dtypes
import numpy as np
import pytest

import reference as R
import spmla
from util import bf16, load_case, make_cache, rand_bf16

FLAVORS = ["e4m3fn", "e4m3fnuz"]
ML_FP8 = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e4m3fnuz": ml_dtypes.float8_e4m3fnuz}


def _table(rng, R_, pages_per_req, total_pages, holes=0.1):
    t = rng.permutation(total_pages)[:R_ * pages_per_req].reshape(R_, pages_per_req).astype(np.int32)
    t[rng.random(t.shape) < holes] = -1
    return t


# ---- 2. indices_to_slots ------------------------------------------------------------------------

@pytest.mark.parametrize("bs", [1, 2, 53, 64])
def test_indices_to_slots_random(rng, bs):
    T, K, Rq, P = 9, int(rng.integers(1, 70)), 3, 5
    table = _table(rng, Rq, P, 40)
    pos = rng.integers(-3, P * bs + 10, (T, K)).astype(np.int32)
    req = rng.integers(-1, Rq + 1, T).astype(np.int32)
    valid = (rng.random(T) > 0.2)
    slots, lengths, indptr, ragged = spmla.indices_to_slots(pos, req, table, bs, token_valid=valid,
                                                            ragged=True)
    rs, rl, rip, rr = R.indices_to_slots(pos, req, table, bs, valid)
    assert np.array_equal(slots, rs) and np.array_equal(lengths, rl)
    assert np.array_equal(indptr, rip) and np.array_equal(ragged[:rip[-1]], rr)
    s2, l2 = spmla.indices_to_slots(pos, req, table, bs, token_valid=valid.astype(np.uint8))
    assert np.array_equal(s2, rs) and np.array_equal(l2, rl)


def test_indices_to_slots_out_arrays(rng):
    table = _table(rng, 2, 4, 8, holes=0)
    pos = rng.integers(0, 4 * 16, (3, 5)).astype(np.int32)
    req = np.array([0, 1, 0], np.int32)
    slots = np.full((3, 8), 99, np.int32)[:, :5]
    lengths = np.zeros(3, np.int32)
    s, l = spmla.indices_to_slots(pos, req, table, 16, out=slots, lengths=lengths)
    assert s is slots and l is lengths
    assert np.array_equal(slots, R.indices_to_slots(pos, req, table, 16)[0])


# ---- 3. window_indices --------------------------------------------------------------------------

@pytest.mark.parametrize("ratio,width", [(1, 128), (1, 7), (4, 16), (128, 64)])
def test_window_indices(rng, ratio, width):
    T, Rq, P, bs = 8, 3, 6, 16
    table = _table(rng, Rq, P, 30)
    pos = rng.integers(-2, P * bs * ratio, T).astype(np.int32)
    req = rng.integers(-1, Rq + 1, T).astype(np.int32)
    slots, lengths = spmla.window_indices(pos, req, table, bs, width, ratio=ratio)
    rs, rl = R.window_indices(pos, req, table, bs, ratio, width)
    assert np.array_equal(slots, rs) and np.array_equal(lengths, rl)
    out = np.zeros((T, width), np.int32)
    s2, _ = spmla.window_indices(pos, req, table, bs, ratio=ratio, out=out)
    assert s2 is out and np.array_equal(out, rs)


# ---- 4. indexer logits --------------------------------------------------------------------------

def _fp8(rng, shape, flavor, scale=1.0):
    return R.fp8_encode(rng.standard_normal(shape).astype(np.float32) * scale, flavor)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("Hi,Di", [(8, 64), (64, 128), (3, 128)])
def test_indexer_logits_ragged(rng, flavor, Hi, Di):
    T, S = 6, int(rng.integers(1, 300))
    q8, k8 = _fp8(rng, (T, Hi, Di), flavor), _fp8(rng, (S, Di), flavor)
    ks = rng.uniform(0.01, 0.1, S).astype(np.float32)
    w = rng.standard_normal((T, Hi)).astype(np.float32)
    start = rng.integers(-2, S, T).astype(np.int32)
    end = (start + rng.integers(-1, S, T)).astype(np.int32)
    ref = R.indexer_logits(q8, k8, ks, w, start, end, flavor)
    # ml_dtypes arrays carry the flavor; uint8 views take it through dtype=.
    got = spmla.indexer_logits(q8.view(ML_FP8[flavor]), k8.view(ML_FP8[flavor]), ks, w, start, end)
    got2 = spmla.indexer_logits(q8, k8, ks, w, start, end, dtype="fp8_" + flavor)
    for g in (got, got2):
        assert g.shape == (T, S) and g.dtype == np.float32
        assert np.array_equal(np.isneginf(g), np.isneginf(ref))
        fin = np.isfinite(ref)
        rowscale = np.maximum(np.abs(np.where(fin, ref, 0)).max(axis=1, keepdims=True), 1e-30)
        assert np.all(np.abs(np.where(fin, g, 0) - np.where(fin, ref, 0)) <= 1e-3 * rowscale + 1e-6)


def test_indexer_logits_strided_out(rng):
    T, S, Hi, Di = 3, 40, 4, 64
    q8, k8 = _fp8(rng, (T, Hi, Di), "e4m3fn"), _fp8(rng, (S, Di), "e4m3fn")
    ks = np.ones(S, np.float32)
    w = np.ones((T, Hi), np.float32)
    start, end = np.zeros(T, np.int32), np.full(T, S, np.int32)
    big = np.full((T, 64), 7.0, np.float32)
    out = big[:, :S]
    r = spmla.indexer_logits(q8, k8, ks, w, start, end, out=out, dtype="fp8_e4m3fn")
    assert r is out and np.all(big[:, S:] == 7.0)
    assert np.allclose(out, R.indexer_logits(q8, k8, ks, w, start, end, "e4m3fn"), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("Di,bs", [(128, 64), (64, 5)])
def test_indexer_store_and_paged_logits(rng, flavor, Di, bs):
    B, N, Hi, P = 3, 2, 16, 4
    pages = B * P + 1
    cache = spmla.KVCache.zeros("indexer_fp8", pages, bs, head_dim=Di, fp8_flavor=flavor)
    ref = R.RefCache(np.zeros_like(cache.data), "indexer_fp8", bs, Di, flavor=flavor)
    n = pages * bs
    k = rand_bf16(rng, (n, Di), 0.7)
    k[0] = 0.0  # an all-zero row (the 1e-4 amax floor)
    k[1] *= bf16(1e-6)  # a tiny one
    slots = rng.permutation(n).astype(np.int64)
    spmla.kv_cache_store(k, slots, cache)
    R.store(ref, k.view(np.uint16), slots)
    assert np.array_equal(cache.data, ref.data)
    table = rng.permutation(pages)[:B * P].reshape(B, P).astype(np.int32)
    ctx = rng.integers(N, P * bs + 1, B).astype(np.int32)
    q8 = _fp8(rng, (B, N, Hi, Di), flavor)
    w = rng.standard_normal((B * N, Hi)).astype(np.float32)
    got = spmla.indexer_logits_paged(q8.view(ML_FP8[flavor]), cache, table, ctx, w)
    C = P * bs
    assert got.shape == (B * N, C)
    ref_cache = R.RefCache(cache.data, "indexer_fp8", bs, Di, flavor=flavor)
    want = R.indexer_logits_paged(q8, ref_cache, table, ctx, w, C)
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    rowscale = np.maximum(np.abs(np.where(fin, want, 0)).max(axis=1, keepdims=True), 1e-30)
    assert np.all(np.abs(np.where(fin, got, 0) - np.where(fin, want, 0)) <= 1e-3 * rowscale + 1e-6)
    got2 = spmla.indexer_logits_paged(q8, cache, table, ctx, w, num_cols=C - 3,
                                      dtype="fp8_" + flavor)
    assert got2.shape == (B * N, C - 3)
    assert np.array_equal(np.isneginf(got2), np.isneginf(want[:, :C - 3]))


# ---- 5. topk ------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 7, 64, 300])
def test_topk_random_with_ties_nan_inf(rng, k):
    Rr, C = 7, int(rng.integers(1, 500))
    x = rng.integers(-5, 5, (Rr, C)).astype(np.float32)  # many ties
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.05] = -np.inf
    x[rng.random(x.shape) < 0.02] = np.inf
    got = spmla.topk_per_row(x, k)
    assert got.shape == (Rr, k) and got.dtype == np.int32
    assert np.array_equal(got, R.topk_per_row(x, k))
    starts = rng.integers(-3, C, Rr).astype(np.int32)
    ends = (starts + rng.integers(-2, C, Rr)).astype(np.int32)
    got = spmla.topk_per_row(x, k, row_starts=starts, row_ends=ends)
    assert np.array_equal(got, R.topk_per_row(x, k, starts, ends))
    got = spmla.topk_per_row(x, k, row_ends=ends)
    assert np.array_equal(got, R.topk_per_row(x, k, None, ends))


def test_topk_paged_rule_and_strided(rng):
    B, N, C, k = 3, 2, 200, 16
    big = rng.standard_normal((B * N, C + 40)).astype(np.float32)
    x = big[:, 5:C + 5]  # row stride free
    ctx = np.array([1, 150, 400], np.int32)
    got = spmla.topk_per_row(x, k, context_lens=ctx, next_n=N)
    assert np.array_equal(got, R.topk_per_row(np.ascontiguousarray(x), k, context_lens=ctx, next_n=N))
    out = np.zeros((B * N, k), np.int32)
    assert spmla.topk_per_row(x, out=out, context_lens=ctx, next_n=N) is out
    assert np.array_equal(out, got)


def test_topk_deterministic(rng):
    x = rng.integers(0, 3, (4, 1000)).astype(np.float32)
    a = spmla.topk_per_row(x, 100)
    for _ in range(3):
        assert np.array_equal(spmla.topk_per_row(x, 100), a)


# ---- 6/7. kv_cache_store / kv_cache_gather ------------------------------------------------------

STORE_LAYOUTS = [("v32_fp8", "e4m3fn", 0), ("v32_fp8", "e4m3fnuz", 0), ("v4_fp8", "e4m3fn", 0),
                 ("v4_fp8", "e4m3fnuz", 0), ("bf16", None, 576), ("bf16", None, 512),
                 ("fp8_per_tensor", "e4m3fn", 576), ("fp8_per_tensor", "e4m3fnuz", 512)]


@pytest.mark.parametrize("layout,flavor,dim", STORE_LAYOUTS)
@pytest.mark.parametrize("bs", [1, 53, 64])
def test_store_bytes_and_gather(rng, layout, flavor, dim, bs):
    pages = 3
    D = R.layout_dim(layout, dim)
    kw = dict(fp8_flavor=flavor) if flavor else dict(fp8_flavor=None)
    cache = spmla.KVCache.zeros(layout, pages, bs, head_dim=dim, scale=0.03, **kw)
    ref = R.RefCache(np.zeros_like(cache.data), layout, bs, D, flavor=flavor or "e4m3fn", scale=0.03)
    n = pages * bs
    N = min(n, 40) + 3
    kv = rand_bf16(rng, (N, D), float(rng.choice([0.01, 1.0, 300.0])))
    slots = np.concatenate([rng.choice(n, N - 3, replace=False), [-1, n, n + 100]])
    slots = slots.astype(rng.choice([np.int32, np.int64]))
    spmla.kv_cache_store(kv, slots, cache)
    R.store(ref, kv.view(np.uint16), slots)
    if layout == "v4_fp8":  # the scale row's pad byte and the page tail are not part of the layout
        mask = np.ones(cache.data.shape[1], bool)
        mask[bs * 576 + 7:bs * 584:8] = False
        mask[bs * 584:] = False
        assert np.array_equal(cache.data[:, mask], ref.data[:, mask])
    else:
        assert np.array_equal(cache.data, ref.data)
    gslots = np.concatenate([slots[:N - 3], [-5, n]]).astype(np.int32)
    got = spmla.kv_cache_gather(cache, gslots)
    assert got.shape == (len(gslots), D)
    assert np.array_equal(got.view(np.uint16), R.gather(ref, gslots))
    assert np.all(got[-2:].astype(np.float32) == 0)


def test_store_skips_and_leaves_other_bytes(rng):
    cache = spmla.KVCache.zeros("v32_fp8", 2, 4)
    cache.data[:] = 0xAB
    spmla.kv_cache_store(rand_bf16(rng, (2, 576)), np.array([-1, 3], np.int32), cache)
    assert np.all(cache.data[0, :3 * 656] == 0xAB) and np.all(cache.data[1] == 0xAB)
    assert not np.all(cache.data[0, 3 * 656:4 * 656] == 0xAB)


def test_padded_page_stride(rng):
    """A page stride larger than the packed page (alignment padding) in a 2-D buffer and in a
    flat buffer with page_stride_bytes; the padding is never written."""
    bs, pages = 5, 3
    packed = spmla.page_bytes("v32_fp8", bs)
    stride = packed + 48
    buf = np.full((pages, stride), 0xCD, np.uint8)
    c2d = spmla.KVCache(buf[:, :packed], "v32_fp8", block_size=bs)
    flat = np.full(pages * stride, 0xCD, np.uint8)
    cflat = spmla.KVCache(flat, "v32_fp8", block_size=bs, page_stride_bytes=stride)
    assert c2d.page_stride_bytes == stride and cflat.num_pages == pages
    kv = rand_bf16(rng, (pages * bs, 576))
    slots = rng.permutation(pages * bs).astype(np.int32)
    spmla.kv_cache_store(kv, slots, c2d)
    spmla.kv_cache_store(kv, slots, cflat)
    assert np.all(buf[:, packed:] == 0xCD)
    assert np.array_equal(flat.reshape(pages, stride), buf)
    ref = R.RefCache(np.zeros((pages, stride), np.uint8), "v32_fp8", bs, 576)
    R.store(ref, kv.view(np.uint16), slots)
    assert np.array_equal(ref.data[:, :packed], buf[:, :packed])


@pytest.mark.parametrize("layout", ["v32_fp8", "v4_fp8"])
def test_store_matches_flashmla_quant_bytes(vectors, layout):
    """spmla's cache bytes equal FlashMLA tests/quant.py's for the same bf16 KV."""
    c = load_case(vectors, "quant_small")
    bs = 16
    if layout == "v32_fp8":
        kv, want = c["v32_kv"].reshape(32, 576), c["v32_k_cache"].reshape(2, -1)
    else:
        kv, want = c["model1_kv"].reshape(32, 512), c["model1_k_cache_pages"]
    cache = spmla.KVCache.zeros(layout, 2, bs)
    spmla.kv_cache_store(kv, np.arange(32, dtype=np.int32), cache, dtype="bf16")
    defined = np.ones(want.shape[1], bool)
    if layout == "v4_fp8":
        defined[bs * 576 + 7:bs * 584:8] = False
        defined[bs * 584:] = False
    assert np.array_equal(cache.data[:, defined], want[:, defined])
