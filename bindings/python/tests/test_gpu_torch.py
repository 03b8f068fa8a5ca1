"""spmla.flash_mla and torch.ops.spmla on torch CUDA tensors against the numpy reference:
FlashMLA-style decode (V3.2 and V4 with an extra cache), the operators on CUDA, torch.compile
(inductor) of a decode step equal to eager. The CUDA-graph replay test is in test_torch_ops.py.

Skips, with the reason, when torch, a CUDA device or spmla's cuda backend is missing."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: GPU tests need torch")
if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device", allow_module_level=True)

import reference as R  # noqa: E402
import spmla  # noqa: E402

_cuda = [b for b in spmla.backends() if b["name"] == "cuda"]
if not _cuda or not _cuda[0]["available"]:
    pytest.skip("spmla's cuda backend is unavailable: "
                + (_cuda[0]["reason"] if _cuda else "not built"), allow_module_level=True)

import spmla.flash_mla as flash_mla  # noqa: E402
import spmla.torch  # noqa: E402,F401
from test_flash_mla import _cache, _check, _indices, _noncontig, _poison_unused, _ref  # noqa: E402
from test_torch_ops import _attn_setup, opcheck, tbf16  # noqa: E402
from util import assert_attention_close, rand_bf16  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = torch.device("cuda", 0)
ops = torch.ops.spmla


def cuda(x):
    return x.to(DEV) if x is not None else None


def dev_view(host_big, view, width):
    """The cache bytes on the GPU with FlashMLA's [nb, bs, 1, width] view of the same storage
    layout as the host view (padded blocks / extra rows included)."""
    d = torch.from_numpy(host_big).to(DEV).view(torch.float8_e4m3fn)
    return d[:, :view.shape[1] * width].view(view.shape)


@pytest.mark.parametrize("h,topk,bs", [(64, 2048, 64), (128, 128, 2), (16, 37, 53)])
def test_flash_mla_v32_decode_cuda(rng, h, topk, bs):
    b, s_q, per = 3, 2, max(2, -(-2048 // bs) // 4)
    nb = b * per
    k_cache, ref, big = _cache(rng, "v32_fp8", nb, bs, extra_rows=1)
    table = rng.permutation(nb).reshape(b, per).astype(np.int32)
    idx = _indices(rng, b, s_q, topk, rng.integers(1, per * bs + 1, b), table, bs)
    lens = rng.integers(0, topk + 1, b).astype(np.int32)
    _poison_unused(ref, [idx[i, :, :lens[i]] for i in range(b)])
    q = _noncontig(torch.from_numpy(rand_bf16(rng, (b, s_q, h, 576)).view(np.int16))
                   .view(torch.bfloat16))
    sink = torch.from_numpy(rng.standard_normal(h).astype(np.float32))
    kc = dev_view(big, k_cache, 656)  # FlashMLA's [nb, bs + 1 rows, 656] storage, on the GPU
    meta, _ = flash_mla.get_mla_metadata()
    for layer in range(2):  # planned once, reused
        out, lse = flash_mla.flash_mla_with_kvcache(
            cuda(q), kc, None, None, 512, meta, is_fp8_kvcache=True,
            indices=cuda(torch.from_numpy(idx)), attn_sink=cuda(sink),
            topk_length=cuda(torch.from_numpy(lens)))
        torch.cuda.synchronize()
        ro, rl, _ = _ref(q.float().numpy(), [(ref, idx, lens)], sink.numpy(), None)
        _check(out.cpu(), lse.cpu(), ro, rl, b, s_q, h)
        assert lse.stride() == (s_q * h, 1, h)


def test_flash_mla_v4_extra_cache_cuda(rng):
    b, s_q, h, topk, xtopk, bs, xbs = 4, 2, 64, 512, 128, 64, 2
    nb, xnb = b * 9, b * 70
    k_cache, ref, big = _cache(rng, "v4_fp8", nb, bs)
    xk_cache, xref, xbig = _cache(rng, "v4_fp8", xnb, xbs)
    table = rng.permutation(nb).reshape(b, 9).astype(np.int32)
    xtable = rng.permutation(xnb).reshape(b, 70).astype(np.int32)
    idx = _indices(rng, b, s_q, topk, rng.integers(1, 9 * bs + 1, b), table, bs)
    xidx = _indices(rng, b, s_q, xtopk, rng.integers(1, 70 * xbs + 1, b), xtable, xbs)
    xlens = rng.integers(0, xtopk + 1, b).astype(np.int32)
    q = torch.from_numpy(rand_bf16(rng, (b, s_q, h, 512)).view(np.int16)).view(torch.bfloat16)
    sink = torch.from_numpy(rng.standard_normal(h).astype(np.float32))

    meta, _ = flash_mla.get_mla_metadata()
    out, lse = flash_mla.flash_mla_with_kvcache(
        cuda(q), dev_view(big, k_cache, 584), None, None, 512, meta, is_fp8_kvcache=True,
        indices=cuda(torch.from_numpy(idx)), attn_sink=cuda(sink),
        extra_k_cache=dev_view(xbig, xk_cache, 584),
        extra_indices_in_kvcache=cuda(torch.from_numpy(xidx)),
        extra_topk_length=cuda(torch.from_numpy(xlens)))
    torch.cuda.synchronize()
    ro, rl, _ = _ref(q.float().numpy(), [(ref, idx, None), (xref, xidx, xlens)], sink.numpy(),
                     None)
    _check(out.cpu(), lse.cpu(), ro, rl, b, s_q, h)


def test_flash_mla_sparse_fwd_cuda(rng):
    s_q, h, d, topk, s_kv = 64, 64, 576, 512, 1000
    kv_np = rand_bf16(rng, (s_kv, 1, d), 0.5)
    ref = R.RefCache(kv_np.view(np.uint8).reshape(s_kv, 2 * d), "bf16", 1, d)
    idx = rng.integers(-1, s_kv + 10, (s_q, 1, topk)).astype(np.int32)
    lens = rng.integers(0, topk + 1, s_q).astype(np.int32)
    q = rand_bf16(rng, (s_q, h, d))
    out, ml, lse = flash_mla.flash_mla_sparse_fwd(
        cuda(tbf16(q)), cuda(tbf16(kv_np)), cuda(torch.from_numpy(idx)), d ** -0.5,
        topk_length=cuda(torch.from_numpy(lens)))
    ro, rl, rm = R.sparse_attention(q.astype(np.float32), [(ref, idx[:, 0], lens)])
    assert_attention_close(out.float().cpu().numpy(), lse.cpu().numpy(), ro, rl,
                           ml.cpu().numpy(), rm)


def test_ops_on_cuda_match_reference_and_opcheck(rng):
    data, ref, idx, lens, q = _attn_setup(rng, T=4, H=32, K=200)
    args = (cuda(tbf16(q)), cuda(torch.from_numpy(data)), cuda(torch.from_numpy(idx)),
            "v32_fp8", 16)
    kw = dict(lengths=cuda(torch.from_numpy(lens)))
    out, lse, ml = ops.sparse_attention(*args, **kw)
    ro, rl, rm = R.sparse_attention(q.astype(np.float32), [(ref, idx, lens)])
    assert_attention_close(out.float().cpu().numpy(), lse.cpu().numpy(), ro, rl,
                           ml.cpu().numpy(), rm)
    opcheck(ops.sparse_attention.default, args, kw)


def test_compile_inductor_decode_step_cuda(rng):
    torch._dynamo.reset()
    data, ref, idx, lens, q = _attn_setup(rng, T=4, H=16, K=64)
    cache, tidx, tlens = (cuda(torch.from_numpy(x)) for x in (data, idx, lens))
    qs = [cuda(tbf16(rand_bf16(rng, q.shape))) for _ in range(3)]
    n = spmla.torch.sparse_attention_workspace_size(qs[0], cache, tidx, "v32_fp8", 16,
                                                    lengths=tlens)
    ws = torch.empty(max(n, 1), dtype=torch.uint8, device=DEV)

    def step(qs, cache, idx, lens, ws):
        ops.sparse_attention_plan(qs[0], cache, idx, "v32_fp8", 16, ws, lengths=lens)
        res = []
        for q in qs:
            out = torch.empty((q.shape[0], q.shape[1], 512), dtype=torch.bfloat16, device=DEV)
            lse = torch.empty((q.shape[0], q.shape[1]), device=DEV)
            ops.sparse_attention_run(q, cache, idx, "v32_fp8", 16, ws, out, lse, lengths=lens)
            res += [out * 2, lse]
        return res

    eager = step(qs, cache, tidx, tlens, ws)
    compiled = torch.compile(step, fullgraph=True)(qs, cache, tidx, tlens, ws)
    for a, c in zip(eager, compiled):
        assert torch.equal(a, c)
    ro, rl, _ = R.sparse_attention(qs[2].float().cpu().numpy(), [(ref, idx, lens)])
    assert_attention_close((eager[4].float() / 2).cpu().numpy(), eager[5].cpu().numpy(), ro, rl)
