"""torch.ops.spmla (spmla.torch) on CPU torch tensors: every operator against the numpy
reference, torch.library.opcheck on every operator, torch.compile(fullgraph=True) of a decode
step (through torch.ops.spmla and through spmla.flash_mla) equal to eager."""

import re

import numpy as np
import pytest

from torch_util import require_torch

torch = require_torch()

import reference as R  # noqa: E402
import spmla  # noqa: E402
import spmla.flash_mla as flash_mla  # noqa: E402
import spmla.torch as spmla_torch  # noqa: E402
from util import assert_attention_close, poison_slot, rand_bf16  # noqa: E402

ops = torch.ops.spmla
T_ = torch.from_numpy
TORCH_FP8 = {"e4m3fn": torch.float8_e4m3fn, "e4m3fnuz": torch.float8_e4m3fnuz}


def tbf16(a):
    """A numpy ml_dtypes bf16 array as a torch bfloat16 tensor (same bits)."""
    return T_(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)


def opcheck(op, args, kwargs=None):
    """torch.library.opcheck with every test it has; all must pass."""
    res = torch.library.opcheck(op, args, kwargs or {})
    assert res and all(v == "SUCCESS" for v in res.values()), res


def _fp8(rng, shape, flavor):
    return R.fp8_encode(rng.standard_normal(shape).astype(np.float32), flavor)


def _attn_setup(rng, layout="v32_fp8", pages=5, bs=16, T=3, H=6, K=30, poison=True):
    dim = 512 if layout == "v4_fp8" else 576
    data = np.zeros((pages, R.packed_page_bytes(layout, bs, dim)), np.uint8)
    ref = R.RefCache(data, layout, bs, dim)
    n = pages * bs
    R.store(ref, rand_bf16(rng, (n, dim), 0.5).view(np.uint16), np.arange(n))
    idx = rng.integers(0, n, (T, K)).astype(np.int32)
    idx[0, :3] = [-1, -9, n + 4]
    lens = rng.integers(0, K + 2, T).astype(np.int32)
    used = {int(idx[t, k]) for t in range(T) for k in range(min(lens[t], K))}
    for s in range(n if poison else 0):
        if s not in used:
            poison_slot(ref, s)
    q = rand_bf16(rng, (T, H, dim))
    return data, ref, idx, lens, q


# ---- registration ----------------------------------------------------------------------------

def test_every_operation_is_registered():
    names = {"sparse_attention", "sparse_attention_plan", "sparse_attention_run",
             "indices_to_slots", "indices_to_slots_ragged", "window_indices", "indexer_logits",
             "indexer_logits_paged", "topk_per_row", "kv_cache_store", "kv_cache_gather",
             "flash_mla_sparse_decode"}
    assert set(spmla_torch.OPS) == names
    for n in names:
        schema = str(getattr(ops, n).default._schema)
        assert schema.startswith(f"spmla::{n}(")
    # what the operators write, and only that, is annotated as written
    assert re.search(r"Tensor\(a\d*!\) workspace", str(ops.sparse_attention_plan.default._schema))
    run = str(ops.sparse_attention_run.default._schema)
    for w in ("workspace", "out", "lse"):
        assert re.search(rf"Tensor\(a\d*!\) {w}\b", run), run
    assert re.search(r"Tensor\(a\d*!\)\? max_logits", run), run
    assert re.search(r"Tensor\(a\d*!\) cache", str(ops.kv_cache_store.default._schema))
    for n in ("sparse_attention", "indices_to_slots", "topk_per_row", "kv_cache_gather"):
        assert "!" not in str(getattr(ops, n).default._schema)


# ---- 1. sparse_attention ---------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["v32_fp8", "v4_fp8"])
def test_sparse_attention_op(rng, layout):
    data, ref, idx, lens, q = _attn_setup(rng, layout)
    sink = rng.standard_normal(q.shape[1]).astype(np.float32)
    args = (tbf16(q), T_(data), T_(idx), layout, 16)
    kw = dict(lengths=T_(lens), attn_sink=T_(sink), scale=0.05)
    out, lse, ml = ops.sparse_attention(*args, **kw)
    ro, rl, rm = R.sparse_attention(q.astype(np.float32), [(ref, idx, lens)], sink, 0.05)
    assert_attention_close(out.float().numpy(), lse.numpy(), ro, rl, ml.numpy(), rm)
    opcheck(ops.sparse_attention.default, args, kw)


def test_sparse_attention_op_extra_cache(rng):
    data, ref, idx, lens, q = _attn_setup(rng, "v4_fp8")
    xdata, xref, xidx, xlens, _ = _attn_setup(rng, "v4_fp8", pages=3, bs=5, K=11)
    args = (tbf16(q), T_(data), T_(idx), "v4_fp8", 16)
    kw = dict(lengths=T_(lens), extra_kv_cache=T_(xdata), extra_indices=T_(xidx),
              extra_lengths=T_(xlens), extra_layout="v4_fp8", extra_block_size=5)
    out, lse, ml = ops.sparse_attention(*args, **kw)
    ro, rl, rm = R.sparse_attention(q.astype(np.float32), [(ref, idx, lens), (xref, xidx, xlens)])
    assert_attention_close(out.float().numpy(), lse.numpy(), ro, rl, ml.numpy(), rm)
    opcheck(ops.sparse_attention.default, args, kw)


def test_plan_once_run_per_layer_into_poisoned_outputs(rng):
    data, ref, idx, lens, q = _attn_setup(rng)
    T, H = q.shape[:2]
    args = (tbf16(q), T_(data), T_(idx), "v32_fp8", 16)
    n = spmla_torch.sparse_attention_workspace_size(*args, lengths=T_(lens),
                                                    return_max_logits=True)
    ws = torch.empty(max(n, 1), dtype=torch.uint8)
    ops.sparse_attention_plan(*args, ws, lengths=T_(lens))
    for layer in range(2):
        ql = rand_bf16(rng, q.shape)
        out = torch.full((T, H, 512), float("nan"), dtype=torch.bfloat16)
        lse = torch.full((T, H), float("nan"))
        ml = torch.full((T, H), float("nan"))
        ops.sparse_attention_run(tbf16(ql), T_(data), T_(idx), "v32_fp8", 16, ws, out, lse, ml,
                                 lengths=T_(lens))
        ro, rl, rm = R.sparse_attention(ql.astype(np.float32), [(ref, idx, lens)])
        assert_attention_close(out.float().numpy(), lse.numpy(), ro, rl, ml.numpy(), rm)
        # without max_logits the run takes the plan's fast path (the plan kept by workspace)
        out2 = torch.full((T, H, 512), float("nan"), dtype=torch.bfloat16)
        lse2 = torch.full((T, H), float("nan"))
        ops.sparse_attention_run(tbf16(ql), T_(data), T_(idx), "v32_fp8", 16, ws, out2, lse2,
                                 lengths=T_(lens))
        assert torch.equal(out2, out) and torch.equal(lse2, lse)
    assert (ws.data_ptr(), ws.device) in spmla_torch._PLANS
    with pytest.raises(spmla.InvalidArgumentError, match="indices"):  # checked on the fast path
        ops.sparse_attention_run(tbf16(ql), T_(data), T_(idx[:, :5].copy()), "v32_fp8", 16, ws,
                                 out2, lse2, lengths=T_(lens))
    opcheck(ops.sparse_attention_plan.default, args + (ws,), dict(lengths=T_(lens)))
    opcheck(ops.sparse_attention_run.default, args + (ws, out, lse, ml), dict(lengths=T_(lens)))


def test_bad_input_raises_spmla_error(rng):
    data, ref, idx, lens, q = _attn_setup(rng)
    with pytest.raises(spmla.InvalidArgumentError, match="layout"):
        ops.sparse_attention(tbf16(q), T_(data), T_(idx), "v9_fp8", 16)
    with pytest.raises(spmla.InvalidArgumentError, match="indices"):
        ops.sparse_attention(tbf16(q), T_(data), T_(idx).float(), "v32_fp8", 16)


# ---- 2-7: the other operators ----------------------------------------------------------------

def test_indices_to_slots_ops(rng):
    T, K, Rq, P, bs = 5, 9, 3, 4, 7
    pos = rng.integers(-1, P * bs + 3, (T, K)).astype(np.int32)
    req = rng.integers(0, Rq, T).astype(np.int32)
    table = rng.permutation(20)[:Rq * P].reshape(Rq, P).astype(np.int32)
    table[1, 2] = -1
    valid = (rng.random(T) > 0.2).astype(np.uint8)
    rs, rl, rip, rrag = R.indices_to_slots(pos, req, table, bs, valid)
    args = (T_(pos), T_(req), T_(table), bs, T_(valid))
    slots, lengths = ops.indices_to_slots(*args)
    assert np.array_equal(slots.numpy(), rs) and np.array_equal(lengths.numpy(), rl)
    s2, l2, ip, rag = ops.indices_to_slots_ragged(*args)
    assert np.array_equal(s2.numpy(), rs) and np.array_equal(ip.numpy(), rip)
    assert np.array_equal(rag.numpy()[:rip[-1]], rrag) and np.all(rag.numpy()[rip[-1]:] == -1)
    opcheck(ops.indices_to_slots.default, args)
    opcheck(ops.indices_to_slots_ragged.default, args)


@pytest.mark.parametrize("ratio,width", [(1, 12), (4, 5)])
def test_window_indices_op(rng, ratio, width):
    T, Rq, P, bs = 6, 2, 5, 8
    pos = rng.integers(0, P * bs, T).astype(np.int32)
    req = rng.integers(0, Rq, T).astype(np.int32)
    table = rng.permutation(12)[:Rq * P].reshape(Rq, P).astype(np.int32)
    rs, rl = R.window_indices(pos, req, table, bs, ratio, width)
    args = (T_(pos), T_(req), T_(table), bs, width, ratio)
    slots, lengths = ops.window_indices(*args)
    assert np.array_equal(slots.numpy(), rs) and np.array_equal(lengths.numpy(), rl)
    opcheck(ops.window_indices.default, args)


def _close_rows(got, want):
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    rowscale = np.maximum(np.abs(np.where(fin, want, 0)).max(axis=1, keepdims=True), 1e-30)
    assert np.all(np.abs(np.where(fin, got, 0) - np.where(fin, want, 0)) <= 1e-3 * rowscale + 1e-6)


@pytest.mark.parametrize("flavor", ["e4m3fn", "e4m3fnuz"])
def test_indexer_logits_op(rng, flavor):
    T, S, Hi, Di = 4, 70, 8, 64
    q8, k8 = _fp8(rng, (T, Hi, Di), flavor), _fp8(rng, (S, Di), flavor)
    ks = rng.uniform(0.01, 0.1, S).astype(np.float32)
    w = rng.standard_normal((T, Hi)).astype(np.float32)
    start = rng.integers(0, S, T).astype(np.int32)
    end = (start + rng.integers(0, S, T)).astype(np.int32)
    want = R.indexer_logits(q8, k8, ks, w, start, end, flavor)
    dt = TORCH_FP8[flavor]
    args = (T_(q8).view(dt), T_(k8).view(dt), T_(ks), T_(w), T_(start), T_(end))
    _close_rows(ops.indexer_logits(*args).numpy(), want)
    # uint8 bytes take the flavor from the argument
    _close_rows(ops.indexer_logits(T_(q8), T_(k8), *args[2:], fp8_flavor=flavor).numpy(), want)
    # opcheck on uint8 bytes: its schema check does arithmetic on the inputs, which torch's
    # float8 dtypes do not implement on the CPU
    opcheck(ops.indexer_logits.default, (T_(q8), T_(k8)) + args[2:], dict(fp8_flavor=flavor))


def test_indexer_cache_store_and_paged_logits_ops(rng):
    B, N, Hi, Di, P, bs = 2, 2, 8, 64, 3, 16
    pages = B * P + 1
    cache = torch.zeros((pages, R.packed_page_bytes("indexer_fp8", bs, Di)), dtype=torch.uint8)
    ref = R.RefCache(np.zeros(tuple(cache.shape), np.uint8), "indexer_fp8", bs, Di)
    n = pages * bs
    k = rand_bf16(rng, (n, Di), 0.7)
    slots = rng.permutation(n).astype(np.int32)
    store_args = (tbf16(k), T_(slots), cache, "indexer_fp8", bs, "e4m3fn", Di)
    ops.kv_cache_store(*store_args)
    R.store(ref, k.view(np.uint16), slots)
    assert np.array_equal(cache.numpy(), ref.data)
    table = rng.permutation(pages)[:B * P].reshape(B, P).astype(np.int32)
    ctx = rng.integers(N, P * bs + 1, B).astype(np.int32)
    q8 = _fp8(rng, (B, N, Hi, Di), "e4m3fn")
    w = rng.standard_normal((B * N, Hi)).astype(np.float32)
    args = (T_(q8).view(torch.float8_e4m3fn), cache, bs, T_(table), T_(ctx), T_(w))
    got = ops.indexer_logits_paged(*args)
    _close_rows(got.numpy(), R.indexer_logits_paged(q8, ref, table, ctx, w, P * bs))
    _close_rows(ops.indexer_logits_paged(T_(q8), *args[1:]).numpy(),
                R.indexer_logits_paged(q8, ref, table, ctx, w, P * bs))
    opcheck(ops.indexer_logits_paged.default, (T_(q8),) + args[1:])  # uint8: see above
    opcheck(ops.kv_cache_store.default, store_args)


def test_topk_op(rng):
    Rr, C, k = 6, 90, 17
    logits = rng.standard_normal((Rr, C)).astype(np.float32)
    logits[0, 5:9] = logits[0, 4]  # ties
    logits[1, 3] = np.nan
    starts = rng.integers(0, 20, Rr).astype(np.int32)
    ends = rng.integers(20, C + 5, Rr).astype(np.int32)
    want = R.topk_per_row(logits, k, starts, ends)
    args = (T_(logits), k, T_(starts), T_(ends))
    assert np.array_equal(ops.topk_per_row(*args).numpy(), want)
    ctx = np.array([40, 77, 90], np.int32)
    want2 = R.topk_per_row(logits, k, context_lens=ctx, next_n=2)
    got2 = ops.topk_per_row(T_(logits), k, context_lens=T_(ctx), next_n=2)
    assert np.array_equal(got2.numpy(), want2)
    opcheck(ops.topk_per_row.default, args)


@pytest.mark.parametrize("layout,bs", [("v32_fp8", 4), ("v4_fp8", 3), ("bf16", 5)])
def test_kv_cache_store_gather_ops(rng, layout, bs):
    pages = 3
    D = 512 if layout == "v4_fp8" else 576
    cache = torch.zeros((pages, R.packed_page_bytes(layout, bs, D)), dtype=torch.uint8)
    ref = R.RefCache(np.zeros(tuple(cache.shape), np.uint8), layout, bs, D)
    n = pages * bs
    kv = rand_bf16(rng, (n - 1, D), 2.0)
    slots = np.concatenate([rng.permutation(n)[:n - 2], [-1]]).astype(np.int32)
    hd = D if layout == "bf16" else 0
    store_args = (tbf16(kv), T_(slots), cache, layout, bs, "e4m3fn", hd)
    ops.kv_cache_store(*store_args)
    R.store(ref, kv.view(np.uint16), slots)
    if layout == "v4_fp8":  # pad bytes of the scale rows / page tail are not part of the layout
        mask = np.ones(cache.shape[1], bool)
        mask[bs * 576 + 7:bs * 584:8] = False
        mask[bs * 584:] = False
        assert np.array_equal(cache.numpy()[:, mask], ref.data[:, mask])
    else:
        assert np.array_equal(cache.numpy(), ref.data)
    g = np.concatenate([slots[:-1], [-3, n]]).astype(np.int32)
    gather_args = (cache, T_(g), layout, bs, "e4m3fn", hd)
    got = ops.kv_cache_gather(*gather_args)
    assert got.shape == (len(g), D) and got.dtype == torch.bfloat16
    assert np.array_equal(got.view(torch.int16).numpy().view(np.uint16), R.gather(ref, g))
    opcheck(ops.kv_cache_gather.default, gather_args)
    opcheck(ops.kv_cache_store.default, store_args)


# ---- torch.compile ---------------------------------------------------------------------------

def _decode_inputs(rng, layers=2):
    data, ref, idx, lens, q = _attn_setup(rng)
    qs = [tbf16(rand_bf16(rng, q.shape)) for _ in range(layers)]
    caches = [T_(data)]
    for _ in range(layers - 1):
        d2, _, _, _, _ = _attn_setup(rng, poison=False)
        caches.append(T_(d2))
    return qs, caches, T_(idx), T_(lens), ref


def _step(qs, caches, idx, lens, ws):
    """An engine's decode step: plan once, run every layer into fresh outputs."""
    ops.sparse_attention_plan(qs[0], caches[0], idx, "v32_fp8", 16, ws, lengths=lens)
    outs = []
    for q, c in zip(qs, caches):
        T, H = q.shape[0], q.shape[1]
        out = torch.empty((T, H, 512), dtype=torch.bfloat16)
        lse = torch.empty((T, H), dtype=torch.float32)
        ops.sparse_attention_run(q, c, idx, "v32_fp8", 16, ws, out, lse, lengths=lens)
        outs += [out * 2, lse]  # a consumer of each layer's result
    return outs


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compile_decode_step_equals_eager(rng, backend):
    torch._dynamo.reset()
    qs, caches, idx, lens, ref = _decode_inputs(rng)
    ws = torch.empty(max(spmla_torch.sparse_attention_workspace_size(
        qs[0], caches[0], idx, "v32_fp8", 16, lengths=lens), 1), dtype=torch.uint8)
    eager = _step(qs, caches, idx, lens, ws)
    compiled = torch.compile(_step, fullgraph=True, backend=backend)(qs, caches, idx, lens, ws)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    ro, rl, _ = R.sparse_attention(qs[0].float().numpy(), [(ref, idx.numpy(), lens.numpy())])
    assert_attention_close((eager[0].float() / 2).numpy(), eager[1].numpy(), ro, rl)


def test_compile_flash_mla_decode_step_equals_eager(rng):
    """spmla.flash_mla under torch.compile(fullgraph=True): each call becomes the
    spmla::flash_mla_sparse_decode operator; results equal the eager drop-in's."""
    torch._dynamo.reset()
    b, s_q, h, topk, bs, nb = 2, 2, 8, 24, 16, 6
    data = np.zeros((nb, bs * 656), np.uint8)
    ref = R.RefCache(data, "v32_fp8", bs, 576)
    R.store(ref, rand_bf16(rng, (nb * bs, 576), 0.5).view(np.uint16), np.arange(nb * bs))
    k_cache = T_(data).view(torch.float8_e4m3fn).view(nb, bs, 1, 656)
    idx = T_(rng.integers(-1, nb * bs, (b, s_q, topk)).astype(np.int32))
    lens = T_(np.array([topk, 9], np.int32))
    sink = T_(rng.standard_normal(h).astype(np.float32))
    qs = [tbf16(rand_bf16(rng, (b, s_q, h, 576))) for _ in range(2)]

    def step(qs, k_cache, idx, lens, sink):
        meta, _ = flash_mla.get_mla_metadata()
        res = []
        for q in qs:
            out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, meta,
                                                        is_fp8_kvcache=True, indices=idx,
                                                        attn_sink=sink, topk_length=lens)
            res += [out, lse]
        return res

    eager = step(qs, k_cache, idx, lens, sink)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(qs, k_cache, idx, lens,
                                                                        sink)
    for a, c in zip(eager, compiled):
        assert a.shape == c.shape and a.stride() == c.stride()
        assert torch.equal(a, c)
    ro, rl, _ = R.sparse_attention(qs[1].float().numpy().reshape(b * s_q, h, 576),
                                   [(ref, idx.numpy().reshape(b * s_q, topk),
                                     np.repeat(lens.numpy(), s_q))], sink.numpy())
    assert_attention_close(eager[2].float().numpy().reshape(b * s_q, h, 512),
                           eager[3].transpose(1, 2).reshape(b * s_q, h).numpy(), ro, rl)
    args = (qs[0], k_cache.view(torch.uint8), idx, 576 ** -0.5, True)
    opcheck(ops.flash_mla_sparse_decode.default, args, dict(topk_length=lens, attn_sink=sink))


# ---- CUDA graphs (GPU only) ------------------------------------------------------------------

@pytest.mark.gpu
def test_cuda_graph_replay_is_bit_exact(rng):
    """Capture a decode layer (torch.ops.spmla run and the flash_mla drop-in) in a CUDA graph,
    replay it on new inputs copied into the captured buffers: bit-equal to eager."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (torch sees none)")
    if not any(b["name"] == "cuda" and b["available"] for b in spmla.backends()):
        pytest.skip("spmla's cuda backend is unavailable")
    dev = torch.device("cuda")
    data, ref, idx, lens, q = _attn_setup(rng, T=4, H=16, K=64)
    cache, tidx, tlens = T_(data).to(dev), T_(idx).to(dev), T_(lens).to(dev)
    tq = tbf16(q).to(dev)
    n = spmla_torch.sparse_attention_workspace_size(tq, cache, tidx, "v32_fp8", 16, lengths=tlens)
    ws = torch.empty(max(n, 1), dtype=torch.uint8, device=dev)
    out = torch.empty((4, 16, 512), dtype=torch.bfloat16, device=dev)
    lse = torch.empty((4, 16), device=dev)
    kc = cache.view(torch.float8_e4m3fn)[:, :16 * 656].view(-1, 16, 1, 656)
    q4 = tq.view(2, 2, 16, 576)
    # flash_mla reads every entry of a list (FlashMLA has no per-token length): the entries past
    # lens[t] are -1 (no key) there, as a FlashMLA caller writes them; _attn_setup poisoned the
    # slots they named with NaN rows.
    fidx = idx.copy()
    fidx[np.arange(64)[None, :] >= lens[:, None]] = -1
    i4 = T_(fidx).to(dev).view(2, 2, 64)
    meta, _ = flash_mla.get_mla_metadata()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up: plans (allocations happen here, not in the graph)
        ops.sparse_attention_plan(tq, cache, tidx, "v32_fp8", 16, ws, lengths=tlens)
        ops.sparse_attention_run(tq, cache, tidx, "v32_fp8", 16, ws, out, lse, lengths=tlens)
        flash_mla.flash_mla_with_kvcache(q4, kc, None, None, 512, meta, is_fp8_kvcache=True,
                                         indices=i4)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        ops.sparse_attention_run(tq, cache, tidx, "v32_fp8", 16, ws, out, lse, lengths=tlens)
        fo, fl = flash_mla.flash_mla_with_kvcache(q4, kc, None, None, 512, meta,
                                                  is_fp8_kvcache=True, indices=i4)
    for trial in range(2):
        qn = rand_bf16(rng, q.shape)
        tq.copy_(tbf16(qn).to(dev))
        out.fill_(float("nan"))
        fo.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        e_out = torch.empty_like(out)
        e_lse = torch.empty_like(lse)
        ops.sparse_attention_run(tq, cache, tidx, "v32_fp8", 16, ws, e_out, e_lse, lengths=tlens)
        meta2, _ = flash_mla.get_mla_metadata()
        eo, el = flash_mla.flash_mla_with_kvcache(q4, kc, None, None, 512, meta2,
                                                  is_fp8_kvcache=True, indices=i4)
        torch.cuda.synchronize()
        assert torch.equal(out, e_out) and torch.equal(lse, e_lse)
        assert torch.isfinite(eo).all()  # so that equality below means the replay wrote fo
        assert torch.equal(fo, eo) and torch.equal(fl, el)
        ro, rl, _ = R.sparse_attention(qn.astype(np.float32), [(ref, idx, lens)])
        assert_attention_close(out.float().cpu().numpy(), lse.cpu().numpy(), ro, rl)
