"""The operations on torch CUDA tensors against torch references, streams, graphs, and the
V3.2 cache bytes against FlashMLA's published quantisation recipe (tests/quant.py semantics).

Skips, with the reason, when torch, a CUDA device or spmla's cuda backend is missing."""

import numpy as np
import pytest

import reference as R
import spmla
from util import load_case

torch = pytest.importorskip("torch", reason="torch is not installed: GPU tests need torch")
if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device", allow_module_level=True)
_cuda = [b for b in spmla.backends() if b["name"] == "cuda"]
if not _cuda or not _cuda[0]["available"]:
    pytest.skip("spmla's cuda backend is unavailable: "
                + (_cuda[0]["reason"] if _cuda else "not built"), allow_module_level=True)

pytestmark = pytest.mark.gpu
DEV = torch.device("cuda", 0)
FP8 = {"e4m3fn": (torch.float8_e4m3fn, 448.0), "e4m3fnuz": (torch.float8_e4m3fnuz, 240.0)}


@pytest.fixture
def gen(request):
    import zlib

    g = torch.Generator(device=DEV)
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    return g


def randn(gen, *shape, scale=1.0, dtype=torch.bfloat16):
    return (torch.randn(*shape, generator=gen, device=DEV) * scale).to(dtype)


# ---- torch references ----------------------------------------------------------------------

def quant_pow2(x, tile, flavor):
    """FlashMLA tests/quant.py semantics: per tile scale = 2^ceil(log2(max(amax / fp8_max, 1e-4)))
    in fp32, fp8 = cast(x / scale). Returns (fp8 bytes [N, n], fp32 scales [N, n / tile])."""
    dt, fmax = FP8[flavor]
    xf = x.float().reshape(x.shape[0], -1, tile)
    amax = xf.abs().amax(dim=-1)
    scale = torch.pow(2.0, torch.ceil(torch.log2(torch.clamp(amax / fmax, min=1e-4))))
    q = (xf / scale.unsqueeze(-1)).clamp(-fmax, fmax).to(dt)
    return q.reshape(x.shape[0], -1).view(torch.uint8), scale


def quant_v32_tokens(kv, flavor="e4m3fn"):
    """[N, 576] bf16 -> [N, 656] bytes of the V3.2 layout."""
    q, scale = quant_pow2(kv[:, :512], 128, flavor)
    rope = kv[:, 512:].contiguous().view(torch.uint8)
    return torch.cat([q, scale.contiguous().view(torch.uint8), rope], dim=1)


def quant_v4_tokens(kv, flavor="e4m3fn"):
    """[N, 512] bf16 -> ([N, 576] data bytes, [N, 7] UE8M0 scale bytes) of the V4 layout."""
    q, scale = quant_pow2(kv[:, :448], 64, flavor)
    exps = torch.log2(scale).round().to(torch.int32) + 127
    data = torch.cat([q, kv[:, 448:].contiguous().view(torch.uint8)], dim=1)
    return data, exps.to(torch.uint8)


def dequant_rows(pages, layout, bs, flavor, dim=576):
    """Every slot's dequantised row (fp32 [slots, D]) from a uint8 [pages, stride] cache."""
    dt, _ = FP8[flavor] if flavor else (None, None)
    n = pages.shape[0]
    if layout == "v32_fp8":
        tok = pages[:, :bs * 656].reshape(n * bs, 656)
        nope = tok[:, :512].contiguous().view(dt).float()
        sc = tok[:, 512:528].contiguous().view(torch.float32)
        rope = tok[:, 528:].contiguous().view(torch.bfloat16).float()
        return torch.cat([nope * sc.repeat_interleave(128, dim=1), rope], dim=1)
    if layout == "v4_fp8":
        data = pages[:, :bs * 576].reshape(n * bs, 576)
        sc = pages[:, bs * 576:bs * 584].reshape(n * bs, 8)[:, :7].to(torch.int32)
        nope = data[:, :448].contiguous().view(dt).float()
        scale = torch.pow(2.0, (sc - 127).float())
        rope = data[:, 448:].contiguous().view(torch.bfloat16).float()
        return torch.cat([nope * scale.repeat_interleave(64, dim=1), rope], dim=1)
    if layout == "bf16":
        return pages[:, :bs * 2 * dim].contiguous().view(torch.bfloat16).reshape(n * bs, dim).float()
    raise ValueError(layout)


def attention_ref(q, sources, sink=None, scale=None):
    """q [T, H, D] bf16; sources: (rows fp32 [S, D], indices [T, K], lengths [T] or None)."""
    T, H, D = q.shape
    scale = scale or D ** -0.5
    logits_all, values_all = [], []
    for rows, idx, lens in sources:
        S = rows.shape[0]
        K = idx.shape[1]
        valid = (idx >= 0) & (idx < S)
        if lens is not None:
            valid &= torch.arange(K, device=DEV)[None, :] < lens[:, None]
        safe = torch.where(valid, idx, torch.zeros_like(idx)).long()
        keys = rows[safe]  # [T, K, D]
        lg = torch.einsum("thd,tkd->thk", q.float(), keys[..., :D]) * scale
        lg = torch.where(valid[:, None, :], lg, torch.full_like(lg, -torch.inf))
        logits_all.append(lg)
        values_all.append(keys[..., :512])
    lg = torch.cat(logits_all, dim=2)
    vals = torch.cat(values_all, dim=1)
    lse = torch.logsumexp(lg, dim=2)
    mx = lg.amax(dim=2)
    p = torch.exp(lg - lse[..., None])
    p = torch.nan_to_num(p, nan=0.0)
    out = torch.einsum("thk,tkd->thd", p, vals)
    if sink is not None:
        out = out / (1 + torch.exp(sink[None, :] - lse))[..., None]
    empty = torch.isneginf(mx)
    lse = torch.where(empty, torch.full_like(lse, torch.inf), lse)
    out = torch.where(empty[..., None], torch.zeros_like(out), out)
    return out, lse, mx


def assert_close_attention(out, lse, ref_out, ref_lse):
    empty = torch.isposinf(ref_lse)
    assert torch.equal(torch.isposinf(lse), empty)
    assert torch.all(out.float()[empty] == 0)
    full = ~empty
    if full.any():
        a, b = out.float()[full], ref_out[full]
        rel = (a - b).norm() / b.norm().clamp_min(1e-30)
        assert rel < 1e-2, float(rel)
        err = (lse[full] - ref_lse[full]).abs()
        assert torch.all(err < 1e-3 * ref_lse[full].abs().clamp_min(1.0)), float(err.max())


def random_indices(gen, T, K, S, invalid=0.2):
    idx = torch.randint(0, S, (T, K), generator=gen, device=DEV, dtype=torch.int32)
    bad = torch.rand(T, K, generator=gen, device=DEV) < invalid
    return torch.where(bad, torch.full_like(idx, -1), idx)


# ---- tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("layout,flavor", [("v32_fp8", "e4m3fn"), ("v32_fp8", "e4m3fnuz"),
                                           ("v4_fp8", "e4m3fn"), ("v4_fp8", "e4m3fnuz")])
def test_store_bytes_match_published_recipe(gen, layout, flavor):
    """spmla's kv_cache_store on the GPU writes the bytes of FlashMLA's quant.py recipe."""
    bs, pages = 64, 4
    D = 576 if layout == "v32_fp8" else 512
    cache = spmla.KVCache.zeros(layout, pages, bs, fp8_flavor=flavor, like=torch.empty(0, device=DEV))
    assert cache.data.is_cuda
    n = pages * bs
    kv = randn(gen, n, D, scale=2.0)
    kv[1] = 0  # the 1e-4 clamp
    slots = torch.randperm(n, generator=gen, device=DEV).to(torch.int64)
    spmla.kv_cache_store(kv, slots, cache)
    torch.cuda.synchronize()
    if layout == "v32_fp8":
        want = quant_v32_tokens(kv, flavor)
        assert torch.equal(cache.data.reshape(n, 656)[slots], want)
    else:
        data, sc = quant_v4_tokens(kv, flavor)
        p, o = slots // bs, slots % bs
        rows = torch.stack([cache.data[pi, oi * 576:(oi + 1) * 576] for pi, oi in zip(p.tolist(), o.tolist())])
        scs = torch.stack([cache.data[pi, bs * 576 + oi * 8:bs * 576 + oi * 8 + 7]
                           for pi, oi in zip(p.tolist(), o.tolist())])
        assert torch.equal(rows, data) and torch.equal(scs, sc)


def test_store_matches_flashmla_vector_bytes_on_gpu(vectors):
    c = load_case(vectors, "quant_small")
    kv = torch.from_numpy(c["v32_kv"].reshape(32, 576).view(np.int16)).view(torch.bfloat16).to(DEV)
    cache = spmla.KVCache(torch.zeros(2, 16 * 656, dtype=torch.uint8, device=DEV), "v32_fp8",
                          block_size=16)
    spmla.kv_cache_store(kv, torch.arange(32, device=DEV, dtype=torch.int32), cache)
    assert np.array_equal(cache.data.cpu().numpy().reshape(2, 16, 656), c["v32_k_cache"])
    assert torch.equal(quant_v32_tokens(kv).cpu(), torch.from_numpy(c["v32_k_cache"].reshape(32, 656)))


@pytest.mark.parametrize("layout,flavor", [("v32_fp8", "e4m3fn"), ("v4_fp8", "e4m3fn"),
                                           ("v32_fp8", "e4m3fnuz"), ("bf16", None)])
@pytest.mark.parametrize("H,K,bs", [(16, 100, 64), (128, 2048, 64), (1, 7, 53)])
def test_attention_vs_torch_reference(gen, layout, flavor, H, K, bs):
    D = 512 if layout == "v4_fp8" else 576
    pages = 40
    like = torch.empty(0, device=DEV)
    cache = spmla.KVCache.zeros(layout, pages, bs, fp8_flavor=flavor, head_dim=0 if layout != "bf16" else D,
                                like=like)
    n = pages * bs
    spmla.kv_cache_store(randn(gen, n, D), torch.arange(n, device=DEV, dtype=torch.int32), cache)
    T = 6
    q = randn(gen, T, H, D)
    idx = random_indices(gen, T, K, n)
    lens = torch.randint(0, K + 1, (T,), generator=gen, device=DEV, dtype=torch.int32)
    sink = torch.randn(H, generator=gen, device=DEV)
    out, lse, mx = spmla.sparse_attention(q, cache, idx, lengths=lens, attn_sink=sink,
                                          return_max_logits=True)
    assert out.is_cuda and out.dtype == torch.bfloat16 and out.shape == (T, H, 512)
    rows = dequant_rows(cache.data, layout, bs, flavor, D)
    ro, rl, rm = attention_ref(q, [(rows, idx, lens)], sink)
    assert_close_attention(out, lse, ro, rl)


def test_v4_window_plan_streams_and_graph(gen):
    """V4 decode with a sliding-window extra cache, planned once, run per layer on a side
    stream, then captured in a CUDA graph and replayed."""
    T, H, layers = 4, 64, 3
    like = torch.empty(0, device=DEV)
    mains = [spmla.KVCache.zeros("v4_fp8", 8, 64, like=like) for _ in range(layers)]
    window = spmla.KVCache.zeros("v4_fp8", 2, 128, like=like)
    for c in mains + [window]:
        n = c.num_pages * c.block_size
        spmla.kv_cache_store(randn(gen, n, 512), torch.arange(n, device=DEV, dtype=torch.int32), c)
    idx = random_indices(gen, T, 512, 512)
    lens = torch.tensor([512, 100, 0, 7], device=DEV, dtype=torch.int32)
    pos = torch.tensor([300, 5, 0, 200], device=DEV, dtype=torch.int32)
    req = torch.arange(T, device=DEV, dtype=torch.int32) % 2
    table = torch.tensor([[1, 0], [0, 1]], device=DEV, dtype=torch.int32)
    widx, wlen = spmla.window_indices(pos, req, table, 128, 128)
    assert widx.is_cuda and torch.equal(
        wlen.cpu(), torch.from_numpy(R.window_indices(pos.cpu().numpy(), req.cpu().numpy(),
                                                      table.cpu().numpy(), 128, 1, 128)[1]))
    sink = torch.randn(H, generator=gen, device=DEV)
    qs = [randn(gen, T, H, 512) for _ in range(layers)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        plan = spmla.SparseAttentionPlan(qs[0], mains[0], idx, lengths=lens, extra_kv_cache=window,
                                         extra_indices=widx, extra_lengths=wlen, attn_sink=sink)
        outs = [plan.run(qs[i], mains[i], idx, extra_kv_cache=window, extra_indices=widx)
                for i in range(layers)]
    torch.cuda.current_stream().wait_stream(side)
    wrows = dequant_rows(window.data, "v4_fp8", 128, "e4m3fn")
    for i in range(layers):
        rows = dequant_rows(mains[i].data, "v4_fp8", 64, "e4m3fn")
        ro, rl, _ = attention_ref(qs[i], [(rows, idx, lens), (wrows, widx, wlen)], sink)
        assert_close_attention(outs[i][0], outs[i][1], ro, rl)
    # Graph capture of a run with preallocated outputs, replayed after q changes in place.
    out = torch.empty(T, H, 512, dtype=torch.bfloat16, device=DEV)
    lse = torch.empty(T, H, device=DEV)
    q = qs[0].clone()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        plan.run(q, mains[1], idx, extra_kv_cache=window, extra_indices=widx, out=out, lse=lse)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        plan.run(q, mains[1], idx, extra_kv_cache=window, extra_indices=widx, out=out, lse=lse)
    q.copy_(qs[2])
    g.replay()
    torch.cuda.synchronize()
    rows = dequant_rows(mains[1].data, "v4_fp8", 64, "e4m3fn")
    ro, rl, _ = attention_ref(qs[2], [(rows, idx, lens), (wrows, widx, wlen)], sink)
    assert_close_attention(out, lse, ro, rl)


def test_slots_topk_indexer_gather_on_gpu(gen):
    B, N, P, bs, Hi, Di = 2, 2, 6, 64, 16, 128
    table = torch.randperm(20, generator=gen, device=DEV)[:B * P].reshape(B, P).to(torch.int32)
    ctx = torch.tensor([300, 129], device=DEV, dtype=torch.int32)
    # indexer cache, store, paged logits vs a torch reference
    icache = spmla.KVCache.zeros("indexer_fp8", 20, bs, head_dim=Di, like=table)
    k = randn(gen, 20 * bs, Di)
    spmla.kv_cache_store(k, torch.arange(20 * bs, device=DEV, dtype=torch.int32), icache)
    kq = icache.data[:, :bs * Di].reshape(20 * bs, Di).view(torch.float8_e4m3fn).float()
    ks = icache.data[:, bs * Di:].contiguous().view(torch.float32).reshape(20 * bs)
    assert torch.allclose(kq * ks[:, None], k.float(), rtol=0.07, atol=1e-3)
    q = randn(gen, B, N, Hi, Di).float().clamp(-448, 448).to(torch.float8_e4m3fn)
    w = torch.randn(B * N, Hi, generator=gen, device=DEV)
    logits = spmla.indexer_logits_paged(q, icache, table, ctx, w)
    assert logits.is_cuda and logits.shape == (B * N, P * bs)
    rows = kq * ks[:, None]
    for r in range(B * N):
        b, i = divmod(r, N)
        L = int(ctx[b]) - N + i + 1
        pos = torch.arange(L, device=DEV)
        slot = table[b, pos // bs].long() * bs + pos % bs
        dots = torch.einsum("hd,sd->hs", q[b, i].float(), rows[slot])
        want = (w[r][:, None] * dots.clamp_min(0)).sum(0)
        assert torch.allclose(logits[r, :L], want, rtol=1e-3, atol=1e-3 * want.abs().max().item())
        assert torch.all(torch.isneginf(logits[r, L:]))
    # top-k with the paged rule, then slots, then gather
    top = spmla.topk_per_row(logits, 64, context_lens=ctx, next_n=N)
    want_top = R.topk_per_row(logits.cpu().numpy(), 64, context_lens=ctx.cpu().numpy(), next_n=N)
    assert torch.equal(top.cpu(), torch.from_numpy(want_top))
    req = torch.arange(B * N, device=DEV, dtype=torch.int32) // N
    slots, lengths = spmla.indices_to_slots(top, req, table, bs)
    ref_slots = table[req.long()[:, None], (top // bs).long()] * bs + top % bs
    assert torch.equal(slots, ref_slots.to(torch.int32)) and torch.all(lengths == 64)
    cache = spmla.KVCache.zeros("v32_fp8", 20, bs, like=table)
    kv = randn(gen, 20 * bs, 576)
    spmla.kv_cache_store(kv, torch.arange(20 * bs, device=DEV, dtype=torch.int32), cache)
    g = spmla.kv_cache_gather(cache, slots[0])
    assert g.is_cuda and torch.equal(g.float(), dequant_rows(cache.data, "v32_fp8", bs, "e4m3fn")[slots[0].long()].to(torch.bfloat16).float())


def test_gpu_error_paths():
    q = torch.zeros(2, 4, 576, dtype=torch.bfloat16, device=DEV)
    cache = spmla.KVCache.zeros("v32_fp8", 2, 16, like=q)
    idx = torch.zeros(2, 8, dtype=torch.int32, device=DEV)
    with pytest.raises(spmla.InvalidArgumentError, match="cuda:0 but the handle runs on cpu"):
        spmla.sparse_attention(q, cache, idx, handle=spmla.Handle("cpu"))
    with pytest.raises(spmla.InvalidArgumentError, match="argument 'indices': tensor on cpu:0"):
        spmla.sparse_attention(q, cache, idx.cpu())
    with pytest.raises(spmla.InvalidArgumentError, match=r"q\.dtype"):
        spmla.sparse_attention(q.float(), cache, idx)
    plan = spmla.SparseAttentionPlan(q, cache, idx)
    if plan.workspace_bytes > 0:
        with pytest.raises(spmla.WorkspaceTooSmallError):
            spmla.sparse_attention(q, cache, idx,
                                   workspace=torch.empty(1, dtype=torch.uint8, device=DEV))


def test_cupy_arrays_if_present(gen):
    cupy = pytest.importorskip("cupy", reason="cupy is not installed")
    x = cupy.asarray(np.random.default_rng(0).standard_normal((4, 300)).astype(np.float32))
    top = spmla.topk_per_row(x, 10)
    assert isinstance(top, cupy.ndarray)
    assert np.array_equal(cupy.asnumpy(top), R.topk_per_row(cupy.asnumpy(x), 10))
    cache = spmla.KVCache.zeros("v32_fp8", 1, 4, like=x)
    kv = cupy.zeros((1, 576), dtype=np.uint16)
    kv[0, 0] = 0x3F80
    spmla.kv_cache_store(spmla.typed(kv, "bf16"), cupy.array([2], dtype=np.int32), cache)
    back = spmla.kv_cache_gather(cache, cupy.array([2], dtype=np.int32))
    assert int(back[0, 0]) == 0x3F80  # bf16 comes back as uint16 bits for cupy
