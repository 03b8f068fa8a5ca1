"""sparse_attention and SparseAttentionPlan against the numpy reference."""

import numpy as np
import pytest

import reference as R
import spmla
from util import assert_attention_close, bf16, load_case, make_cache, rand_bf16

LAYOUTS = [("v32_fp8", "e4m3fn"), ("v32_fp8", "e4m3fnuz"), ("v4_fp8", "e4m3fn"),
           ("v4_fp8", "e4m3fnuz"), ("bf16", None), ("fp8_per_tensor", "e4m3fn"),
           ("fp8_per_tensor", "e4m3fnuz")]


def _dim(layout):
    return 512 if layout == "v4_fp8" else 576


def _random_indices(rng, T, K, num_slots, invalid_frac=0.2, avoid=()):
    idx = rng.integers(0, num_slots, (T, K)).astype(np.int32)
    if len(avoid):
        bad = np.isin(idx, list(avoid))
        idx[bad] = -1
    mask = rng.random((T, K)) < invalid_frac
    junk = rng.choice(np.array([-1, -7, num_slots, num_slots + 5, 2**31 - 1, -2**31]), (T, K))
    idx[mask] = junk[mask].astype(np.int32)
    return idx


@pytest.mark.parametrize("layout,flavor", LAYOUTS)
def test_random_shapes(rng, layout, flavor):
    for trial in range(3):
        bs = int(rng.choice([1, 2, 16, 53, 64]))
        pages = int(rng.integers(1, 6))
        T = int(rng.integers(1, 5))
        H = int(rng.choice([1, 3, 16, 64, 128]))
        K = int(rng.integers(1, 200))
        cache, ref = make_cache(rng, layout, pages, bs, flavor=flavor or "e4m3fn", dim=_dim(layout))
        q = rand_bf16(rng, (T, H, _dim(layout)))
        idx = _random_indices(rng, T, K, pages * bs)
        lengths = rng.integers(0, K + 3, T).astype(np.int32) if trial == 1 else None
        scale = None if trial == 0 else float(rng.uniform(0.02, 0.1))
        out, lse, mx = spmla.sparse_attention(q, cache, idx, lengths=lengths, scale=scale,
                                              return_max_logits=True)
        assert out.shape == (T, H, 512) and out.dtype.name == "bfloat16"
        assert lse.shape == (T, H) and lse.dtype == np.float32 and mx.shape == (T, H)
        ro, rl, rm = R.sparse_attention(q.astype(np.float32), [(ref, idx, lengths)], None, scale)
        assert_attention_close(out, lse, ro, rl, mx, rm)


@pytest.mark.parametrize("layout,flavor", [("v32_fp8", "e4m3fn"), ("v4_fp8", "e4m3fnuz"),
                                           ("bf16", None)])
def test_masked_slots_never_reach_output(rng, layout, flavor):
    """NaN-poisoned slots listed beyond lengths, and garbage ids, must not change the result."""
    bs, pages, T, H, K = 16, 4, 4, 8, 40
    n = pages * bs
    poison = rng.choice(n, 12, replace=False)
    cache, ref = make_cache(rng, layout, pages, bs, flavor=flavor or "e4m3fn", dim=_dim(layout),
                            poison=poison)
    q = rand_bf16(rng, (T, H, _dim(layout)))
    idx = _random_indices(rng, T, K, n, avoid=poison)
    lengths = np.array([K, 25, 3, 0], np.int32)
    for t in range(T):
        idx[t, lengths[t]:] = rng.choice(poison, K - lengths[t])
    out, lse = spmla.sparse_attention(q, cache, idx, lengths=lengths)
    ro, rl, _ = R.sparse_attention(q.astype(np.float32), [(ref, idx, lengths)])
    assert_attention_close(out, lse, ro, rl)
    assert np.all(np.isposinf(lse[3])) and np.all(out[3].astype(np.float32) == 0)


def test_empty_everything(rng):
    cache, ref = make_cache(rng, "v32_fp8", 2, 64)
    q = rand_bf16(rng, (3, 5, 576))
    idx = np.full((3, 7), -1, np.int32)
    out, lse, mx = spmla.sparse_attention(q, cache, idx, return_max_logits=True)
    assert np.all(out.astype(np.float32) == 0) and np.all(np.isposinf(lse)) and np.all(np.isneginf(mx))


def test_sink_and_extra_source_v4(rng):
    """DeepSeek-V4 decode: main compressed cache + sliding-window extra cache + sink."""
    T, H = 5, 64
    main, rmain = make_cache(rng, "v4_fp8", 5, 64)
    extra, rextra = make_cache(rng, "v4_fp8", 2, 128, flavor="e4m3fn")
    q = rand_bf16(rng, (T, H, 512))
    idx = _random_indices(rng, T, 96, 5 * 64)
    lens = rng.integers(0, 97, T).astype(np.int32)
    eidx = _random_indices(rng, T, 128, 256)
    elens = rng.integers(0, 129, T).astype(np.int32)
    elens[0], lens[0] = 0, 0  # one token with nothing at all
    sink = rng.uniform(-2, 2, H).astype(np.float32)
    sink[3], sink[7] = np.inf, -np.inf
    out, lse, mx = spmla.sparse_attention(q, main, idx, lengths=lens, extra_kv_cache=extra,
                                          extra_indices=eidx, extra_lengths=elens, attn_sink=sink,
                                          scale=0.08, return_max_logits=True)
    ro, rl, rm = R.sparse_attention(q.astype(np.float32),
                                    [(rmain, idx, lens), (rextra, eidx, elens)], sink, 0.08)
    assert_attention_close(out, lse, ro, rl, mx, rm)
    assert np.all(out[:, 3].astype(np.float32) == 0)  # +inf sink gives exactly 0


def test_mixed_layouts_extra_bf16(rng):
    main, rmain = make_cache(rng, "v32_fp8", 3, 16, flavor="e4m3fnuz")
    extra, rextra = make_cache(rng, "bf16", 2, 8, dim=576)
    q = rand_bf16(rng, (2, 4, 576))
    idx = _random_indices(rng, 2, 20, 48)
    eidx = _random_indices(rng, 2, 5, 16)
    out, lse = spmla.sparse_attention(q, main, idx, extra_kv_cache=extra, extra_indices=eidx)
    ro, rl, _ = R.sparse_attention(q.astype(np.float32), [(rmain, idx, None), (rextra, eidx, None)])
    assert_attention_close(out, lse, ro, rl)


def test_duplicates_count_per_occurrence(rng):
    cache, ref = make_cache(rng, "v32_fp8", 1, 8)
    q = rand_bf16(rng, (1, 2, 576))
    idx = np.array([[3, 3, 3, 5]], np.int32)
    out, lse = spmla.sparse_attention(q, cache, idx)
    ro, rl, _ = R.sparse_attention(q.astype(np.float32), [(ref, idx, None)])
    assert_attention_close(out, lse, ro, rl)


def test_out_arguments_and_strided_inputs(rng):
    cache, ref = make_cache(rng, "v32_fp8", 2, 64)
    big = rand_bf16(rng, (6, 9, 576))
    q = big[::2, 1:8]  # non-contiguous outer dims; innermost stays contiguous
    idx_big = _random_indices(rng, 3, 50, 128)
    idx = np.zeros((3, 64), np.int32)
    idx[:, :50] = idx_big
    idx = idx[:, :50]  # row stride 64
    out_big = np.full((3, 7, 520), np.nan, np.float32).astype(bf16(0).dtype)
    out = out_big[:, :, :512]
    lse = np.zeros((3, 7), np.float32)
    mx = np.zeros((3, 7), np.float32)
    r = spmla.sparse_attention(q, cache, idx, out=out, lse=lse, max_logits=mx)
    assert r[0] is out and r[1] is lse and r[2] is mx
    ro, rl, rm = R.sparse_attention(q.astype(np.float32), [(ref, idx, None)])
    assert_attention_close(out, lse, ro, rl, mx, rm)
    assert np.all(np.isnan(out_big[:, :, 512:].astype(np.float32)))  # padding untouched


def test_uint16_views_with_dtype(rng):
    cache, ref = make_cache(rng, "v4_fp8", 2, 16)
    q = rand_bf16(rng, (2, 3, 512))
    idx = _random_indices(rng, 2, 10, 32)
    out = np.zeros((2, 3, 512), np.uint16)
    o, lse = spmla.sparse_attention(q.view(np.uint16), cache, idx, out=out, dtype="bf16")
    assert o is out
    ro, rl, _ = R.sparse_attention(q.astype(np.float32), [(ref, idx, None)])
    assert_attention_close(R.bf16_bits_to_f32(out), lse, ro, rl)
    o2, _ = spmla.sparse_attention(spmla.typed(q.view(np.uint16), "bf16"), cache, idx)
    assert np.array_equal(o2.view(np.uint16), out)


def test_plan_reused_across_layers(rng):
    """Engine pattern: plan once per step, run every layer with its own q, cache and indices."""
    T, H, K, layers = 4, 16, 64, 3
    lengths = np.array([64, 10, 0, 33], np.int32)
    caches = [make_cache(rng, "v32_fp8", 4, 64) for _ in range(layers)]
    qs = [rand_bf16(rng, (T, H, 576)) for _ in range(layers)]
    idxs = [_random_indices(rng, T, K, 256) for _ in range(layers)]
    ws = spmla.Workspace()
    plan = spmla.SparseAttentionPlan(qs[0], caches[0][0], idxs[0], lengths=lengths, workspace=ws)
    assert plan.workspace is ws and plan.workspace_bytes >= 0
    for layer in range(layers):
        out, lse = plan.run(qs[layer], caches[layer][0], idxs[layer])
        ro, rl, _ = R.sparse_attention(qs[layer].astype(np.float32), [(caches[layer][1], idxs[layer], lengths)])
        assert_attention_close(out, lse, ro, rl)
    # Next step: the engine rewrites lengths in place, replans, runs again.
    lengths[:] = [5, 64, 1, 0]
    plan.replan()
    out, lse = plan.run(qs[1], caches[1][0], idxs[1])
    ro, rl, _ = R.sparse_attention(qs[1].astype(np.float32), [(caches[1][1], idxs[1], lengths)])
    assert_attention_close(out, lse, ro, rl)


def test_plan_rejects_other_shapes(rng):
    cache, _ = make_cache(rng, "v32_fp8", 2, 16)
    q = rand_bf16(rng, (2, 4, 576))
    idx = _random_indices(rng, 2, 8, 32)
    plan = spmla.SparseAttentionPlan(q, cache, idx)
    with pytest.raises(spmla.InvalidArgumentError, match="differs from the plan"):
        plan.run(rand_bf16(rng, (3, 4, 576)), cache, _random_indices(rng, 3, 8, 32))
    with pytest.raises(spmla.InvalidArgumentError, match="differs from the plan"):
        plan.run(q, cache, _random_indices(rng, 2, 9, 32))
    other, _ = make_cache(rng, "v32_fp8", 3, 16)
    with pytest.raises(spmla.InvalidArgumentError, match="kv_cache"):
        plan.run(q, other, idx)
    with pytest.raises(spmla.InvalidArgumentError, match="return_max_logits"):
        plan.run(q, cache, idx, max_logits=np.zeros((2, 4), np.float32))


# ---- FlashMLA's public cases through spmla ---------------------------------------------------

def _close_to_flashmla(out, lse, ref_out, ref_lse):
    fin = np.isfinite(ref_lse)
    assert np.array_equal(np.isfinite(lse), fin)
    o = np.asarray(out).astype(np.float32)
    assert np.abs(o - ref_out).max() < 4e-3
    assert np.abs(lse[fin] - ref_lse[fin]).max() < 1e-4


@pytest.mark.parametrize("name", ["v32_decode_small", "v32_decode_sink"])
def test_flashmla_v32_decode_vectors(vectors, name):
    c = load_case(vectors, name)
    b, s_q, h, d = c["q"].shape
    cache = spmla.KVCache(c["k_cache"], "v32_fp8", block_size=64)  # [pages, 64, 656] uint8
    q = c["q"].reshape(b * s_q, h, d)
    out, lse = spmla.sparse_attention(q, cache, c["indices"].reshape(b * s_q, -1),
                                      attn_sink=c.get("attn_sink"), scale=0.75, dtype="bf16")
    _close_to_flashmla(R.bf16_bits_to_f32(out.view(np.uint16)), lse,
                       R.bf16_bits_to_f32(c["out"]).reshape(b * s_q, h, 512),
                       c["lse"].transpose(0, 2, 1).reshape(b * s_q, h))


def test_flashmla_v4_decode_vectors_kernel_view(vectors):
    """FlashMLA's kernel view of a V4 cache, [pages, bs, 1, 584] over the padded page buffer,
    lacks each page's rounding to a multiple of 576, which kv_cache_store writes: it is refused
    with a message naming the view to hand over; the padded page buffer itself
    (``[pages, 37440]``, as FlashMLA allocates it) or ``data[:, :37440]`` of it is the cache."""
    c = load_case(vectors, "model1_decode_small")
    main_pages, extra_pages = c["k_cache_pages"], c["extra_k_cache_pages"]
    main_view = main_pages[:, :64 * 584].reshape(6, 64, 1, 584)
    assert main_view.strides[0] == 37440 and main_view.base is not None
    with pytest.raises(spmla.InvalidArgumentError, match=r"rows of at least 37440 bytes.*"
                                                         r"data\[:, :37440\]"):
        spmla.KVCache(main_view, "v4_fp8", block_size=64).num_pages
    main = spmla.KVCache(main_pages[:, :37440], "v4_fp8", block_size=64)
    assert main.page_stride_bytes == 37440 and main.num_pages == 6
    extra = spmla.KVCache(extra_pages, "v4_fp8", block_size=128)
    out, lse = spmla.sparse_attention(
        spmla.typed(c["q"].reshape(1, 64, 512), "bf16"), main, c["indices"].reshape(1, -1),
        lengths=c["topk_length"], extra_kv_cache=extra,
        extra_indices=c["extra_indices"].reshape(1, -1), extra_lengths=c["extra_topk_length"],
        attn_sink=c["attn_sink"], scale=0.75)
    _close_to_flashmla(out, lse, R.bf16_bits_to_f32(c["out"]).reshape(1, 64, 512),
                       c["lse"].reshape(1, 64))


@pytest.mark.parametrize("name,dim", [("v32_prefill_small", 576), ("model1_prefill_small", 512)])
def test_flashmla_prefill_vectors(vectors, name, dim):
    c = load_case(vectors, name)
    kv = c["kv"].reshape(-1, dim)  # bf16 bits, one token per page
    cache = spmla.KVCache(kv, "bf16", block_size=1, head_dim=dim)
    q = spmla.typed(c["q"], "bf16")
    out, lse, mx = spmla.sparse_attention(q, cache, c["indices"][:, 0, :],
                                          lengths=c.get("topk_length"), attn_sink=c["attn_sink"],
                                          scale=5.0, return_max_logits=True)
    _close_to_flashmla(out, lse, R.bf16_bits_to_f32(c["out"]), c["lse"])
    fin = np.isfinite(c["max_logits"])
    assert np.array_equal(np.isfinite(mx), fin)
    assert np.abs(mx[fin] - c["max_logits"][fin]).max() < 1e-4
