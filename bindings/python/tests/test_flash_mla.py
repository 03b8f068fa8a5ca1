"""spmla.flash_mla (the FlashMLA drop-in) on CPU torch tensors, FlashMLA-style inputs, against the
numpy reference of docs/SPEC.md."""

import numpy as np
import pytest

from torch_util import require_torch

torch = require_torch()

import reference as R  # noqa: E402
import spmla  # noqa: E402
import spmla.flash_mla as flash_mla  # noqa: E402
from util import assert_attention_close, poison_slot, rand_bf16  # noqa: E402


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every output flash_mla allocates starts as NaN: a value it fails to write shows."""
    real = torch.empty

    def nan_empty(*shape, **kw):
        t = real(*shape, **kw)
        return t.fill_(float("nan"))

    monkeypatch.setattr(flash_mla, "_empty", nan_empty)


def _cache(rng, layout, nb, bs, *, extra_rows=0, poison_frac=0.3):
    """(FlashMLA-style torch view [nb, bs, 1, bytes] float8, RefCache). V3.2: blocks of
    (bs + extra_rows) * 656 bytes of which the first bs tokens are the block (FlashMLA's
    quantize_k_cache allocates bs + 1 rows); V4: padded blocks, the view stops at 584 * bs bytes
    into each (FlashMLA's kernel view). Unreferenced slots are NaN-poisoned by the caller."""
    if layout == "v32_fp8":
        width, dim = 656, 576
        stride = (bs + extra_rows) * 656
    else:
        width, dim = 584, 512
        stride = R.packed_page_bytes("v4_fp8", bs, 512)
    big = np.zeros((nb, stride), np.uint8)
    ref = R.RefCache(big, layout, bs, dim)
    n = nb * bs
    R.store(ref, rand_bf16(rng, (n, dim), 0.5).view(np.uint16), np.arange(n))
    t = torch.from_numpy(big).view(torch.float8_e4m3fn)
    view = t[:, :bs * width].view(nb, bs, 1, width)
    return view, ref, big


def _indices(rng, b, s_q, topk, ctx, block_table, bs, invalid=0.15):
    """FlashMLA-style indices_in_kvcache [b, s_q, topk]: positions < ctx[b] through the block
    table, -1 for a fraction of entries."""
    idx = np.full((b, s_q, topk), -1, np.int32)
    for i in range(b):
        for j in range(s_q):
            pos = rng.integers(0, ctx[i], topk)
            slots = block_table[i, pos // bs] * bs + pos % bs
            keep = rng.random(topk) >= invalid
            idx[i, j] = np.where(keep, slots, -1)
    return idx


def _noncontig(x):
    """x with its b and s_q strides independent (a slice of a bigger tensor)."""
    b, s = x.shape[0], x.shape[1]
    big = torch.empty((b, s + 1) + tuple(x.shape[2:-1]) + (x.shape[-1] + 64,), dtype=x.dtype)
    big.fill_(float("nan") if x.is_floating_point() else -5)
    v = big[:, :s, ..., :x.shape[-1]]
    v.copy_(x)
    return v


def _poison_unused(ref, idx_list):
    used = set(int(v) for idx in idx_list for v in np.asarray(idx).ravel())
    for s in range(ref.num_slots):
        if s not in used:
            poison_slot(ref, s)


def _ref(q_np, srcs, sink, scale):
    b, s_q, h, d = q_np.shape
    T = b * s_q
    flat = [(ref, idx.reshape(T, -1), None if lens is None else np.repeat(lens, s_q))
            for ref, idx, lens in srcs]
    return R.sparse_attention(q_np.reshape(T, h, d).astype(np.float32), flat, sink, scale)


def _check(out, lse, ro, rl, b, s_q, h):
    assert out.shape == (b, s_q, h, 512) and out.dtype == torch.bfloat16
    assert lse.shape == (b, h, s_q) and lse.dtype == torch.float32
    assert lse.stride() == (s_q * h, 1, h), "lse is FlashMLA's transposed [b, s_q, h_q] buffer"
    T = b * s_q
    assert_attention_close(out.float().reshape(T, h, 512).numpy(),
                           lse.transpose(1, 2).reshape(T, h).numpy(), ro, rl)


@pytest.mark.parametrize("b,s_q,h,topk,bs,noncontig", [
    (2, 2, 16, 64, 64, True), (3, 1, 128, 128, 2, False), (1, 3, 5, 37, 53, True),
])
def test_v32_decode(rng, b, s_q, h, topk, bs, noncontig):
    nb = b * 4
    k_cache, ref, _ = _cache(rng, "v32_fp8", nb, bs, extra_rows=1)
    table = rng.permutation(nb).reshape(b, 4).astype(np.int32)
    ctx = rng.integers(1, 4 * bs + 1, b)
    idx = _indices(rng, b, s_q, topk, ctx, table, bs)
    _poison_unused(ref, [idx])
    q = torch.from_numpy(rand_bf16(rng, (b, s_q, h, 576)).view(np.int16)).view(torch.bfloat16)
    tidx = torch.from_numpy(idx)
    if noncontig:
        q, tidx = _noncontig(q), _noncontig(tidx)
    sink = torch.from_numpy(rng.standard_normal(h).astype(np.float32))
    sink[0] = float("inf")
    if h > 2:
        sink[1] = float("-inf")
    meta, none = flash_mla.get_mla_metadata()
    assert none is None and not meta.have_initialized
    out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, meta, None,
                                                is_fp8_kvcache=True, indices=tidx,
                                                attn_sink=sink)
    assert meta.have_initialized and meta.config.topk == topk and meta.config.h_q == h
    ro, rl, _ = _ref(q.float().numpy(), [(ref, idx, None)], sink.numpy(), None)
    _check(out, lse, ro, rl, b, s_q, h)
    assert torch.all(out[:, :, 0] == 0), "a +inf sink zeroes the head's output"


@pytest.mark.parametrize("bs,xbs,topk_len,xtopk_len", [
    (64, 2, True, True), (3, 61, False, True), (72, 64, True, False),
])
def test_v4_decode_with_extra_cache(rng, bs, xbs, topk_len, xtopk_len):
    """DeepSeek-V4: padded 584-byte blocks as FlashMLA's quantize_k_cache lays them out, its
    [nb, bs, 1, 584] view, an extra (sliding-window) cache, per-request topk lengths."""
    b, s_q, h, topk, xtopk = 3, 2, 64, 48, 20
    nb, xnb = b * 3, b * 2
    k_cache, ref, _ = _cache(rng, "v4_fp8", nb, bs)
    xk_cache, xref, _ = _cache(rng, "v4_fp8", xnb, xbs)
    table = rng.permutation(nb).reshape(b, 3).astype(np.int32)
    xtable = rng.permutation(xnb).reshape(b, 2).astype(np.int32)
    idx = _indices(rng, b, s_q, topk, rng.integers(1, 3 * bs + 1, b), table, bs)
    xidx = _indices(rng, b, s_q, xtopk, rng.integers(1, 2 * xbs + 1, b), xtable, xbs)
    lens = rng.integers(0, topk + 1, b).astype(np.int32) if topk_len else None
    xlens = rng.integers(0, xtopk + 1, b).astype(np.int32) if xtopk_len else None
    if lens is not None:
        lens[0] = 0
    _poison_unused(ref, [idx[i, :, :lens[i]] if lens is not None else idx[i] for i in range(b)])
    _poison_unused(xref, [xidx[i, :, :xlens[i]] if xlens is not None else xidx[i]
                          for i in range(b)])
    q = _noncontig(torch.from_numpy(rand_bf16(rng, (b, s_q, h, 512)).view(np.int16))
                   .view(torch.bfloat16))
    sink = torch.from_numpy(rng.standard_normal(h).astype(np.float32))
    scale = 512 ** -0.55
    meta, _ = flash_mla.get_mla_metadata()
    t = torch.from_numpy
    out, lse = flash_mla.flash_mla_with_kvcache(
        q, k_cache, None, None, 512, meta, softmax_scale=scale, is_fp8_kvcache=True,
        indices=t(idx), attn_sink=sink, extra_k_cache=xk_cache,
        extra_indices_in_kvcache=t(xidx), topk_length=t(lens) if lens is not None else None,
        extra_topk_length=t(xlens) if xlens is not None else None)
    ro, rl, _ = _ref(q.float().numpy(), [(ref, idx, lens), (xref, xidx, xlens)], sink.numpy(),
                     scale)
    _check(out, lse, ro, rl, b, s_q, h)


def test_metadata_planned_once_reused_by_every_layer(rng):
    """One metadata per step: the first call plans, the later layers (other q and caches of the
    same geometry) reuse the plan and workspace, and each layer equals the reference."""
    b, s_q, h, topk, bs, nb = 2, 2, 8, 40, 16, 8
    table = rng.permutation(nb).reshape(b, 4).astype(np.int32)
    idx = _indices(rng, b, s_q, topk, np.array([60, 33]), table, bs)
    lens = np.array([40, 17], np.int32)
    meta, _ = flash_mla.get_mla_metadata()
    for layer in range(3):
        k_cache, ref, _ = _cache(rng, "v32_fp8", nb, bs)
        q = torch.from_numpy(rand_bf16(rng, (b, s_q, h, 576)).view(np.int16)).view(torch.bfloat16)
        out, lse = flash_mla.flash_mla_with_kvcache(
            q, k_cache, None, None, 512, meta, is_fp8_kvcache=True, indices=torch.from_numpy(idx),
            topk_length=torch.from_numpy(lens))
        if layer == 0:
            plan, ws = meta.plan, meta.workspace
        assert meta.plan is plan and meta.workspace is ws
        ro, rl, _ = _ref(q.float().numpy(), [(ref, idx, lens)], None, None)
        _check(out, lse, ro, rl, b, s_q, h)
    with pytest.raises(spmla.InvalidArgumentError, match="topk_length given / absent"):
        flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, meta, is_fp8_kvcache=True,
                                         indices=torch.from_numpy(idx))
    with pytest.raises(spmla.InvalidArgumentError, match="topk 20 .planned 40"):
        flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, meta, is_fp8_kvcache=True,
                                         indices=torch.from_numpy(idx[:, :, :20].copy()))


def test_beyond_flashmla_any_negative_id_any_h(rng):
    """Ids FlashMLA would read out of bounds with (-2, INT_MIN, >= num_slots) are "no key";
    H = 3 and top-k = 5 (FlashMLA: 64/128 heads, padded top-k); a request with nothing valid
    gets out 0 and lse +inf."""
    b, s_q, h, topk, bs, nb = 2, 1, 3, 5, 7, 3
    k_cache, ref, _ = _cache(rng, "v32_fp8", nb, bs)
    idx = rng.integers(0, nb * bs, (b, s_q, topk)).astype(np.int32)
    idx[0, 0, 1:4] = [-2, -2**31, nb * bs]
    idx[1, 0, :] = [-1, -3, nb * bs + 9, 2**31 - 1, -100]
    q = torch.from_numpy(rand_bf16(rng, (b, s_q, h, 576)).view(np.int16)).view(torch.bfloat16)
    meta, _ = flash_mla.get_mla_metadata()
    out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, meta,
                                                is_fp8_kvcache=True, indices=torch.from_numpy(idx))
    ro, rl, _ = _ref(q.float().numpy(), [(ref, idx, None)], None, None)
    _check(out, lse, ro, rl, b, s_q, h)
    assert torch.all(out[1] == 0) and torch.all(torch.isposinf(lse[1]))


def test_v4_view_without_storage_for_the_last_padding_is_refused(rng):
    """A [nb, bs, 1, 584] tensor that ends where the last block's data ends (no padding behind
    it in the storage) cannot be widened: a clear error, no read past the storage."""
    bs, nb = 3, 2
    padded = R.packed_page_bytes("v4_fp8", bs, 512)
    buf = torch.zeros(padded * (nb - 1) + 584 * bs, dtype=torch.uint8)
    view = buf.as_strided((nb, bs, 1, 584), (padded, 584, 584, 1))
    q = torch.zeros((1, 1, 64, 512), dtype=torch.bfloat16).normal_()
    meta, _ = flash_mla.get_mla_metadata()
    with pytest.raises(spmla.InvalidArgumentError, match=f"padding to {padded} bytes lies outside"):
        flash_mla.flash_mla_with_kvcache(q, view, None, None, 512, meta, is_fp8_kvcache=True,
                                         indices=torch.zeros((1, 1, 4), dtype=torch.int32))
    packed = torch.zeros((nb, bs, 1, 584), dtype=torch.uint8)  # blocks 1752 B apart: unpadded
    with pytest.raises(spmla.InvalidArgumentError, match=f"padded to {padded}"):
        flash_mla.flash_mla_with_kvcache(q, packed, None, None, 512, meta, is_fp8_kvcache=True,
                                         indices=torch.zeros((1, 1, 4), dtype=torch.int32))


@pytest.mark.parametrize("call,err,match", [
    (lambda q, k, i, m: flash_mla.flash_mla_with_kvcache(q, k, None, None, 512, m),
     spmla.UnsupportedError, "dense decode"),
    (lambda q, k, i, m: flash_mla.flash_mla_with_kvcache(q, k, None, None, 256, m, indices=i,
                                                         is_fp8_kvcache=True),
     spmla.UnsupportedError, "head_dim_v"),
    (lambda q, k, i, m: flash_mla.flash_mla_with_kvcache(q, k, None, None, 512, m, indices=i),
     spmla.InvalidArgumentError, "is_fp8_kvcache=True"),
    (lambda q, k, i, m: flash_mla.flash_mla_with_kvcache(q[..., :512], k, None, None, 512, m,
                                                         indices=i, is_fp8_kvcache=True),
     spmla.InvalidArgumentError, "656 bytes per token"),
    (lambda q, k, i, m: flash_mla.flash_mla_with_kvcache(q, k, None, None, 512, object(),
                                                         indices=i, is_fp8_kvcache=True),
     spmla.InvalidArgumentError, "get_mla_metadata"),
    (lambda q, k, i, m: flash_mla.flash_mla_with_kvcache(
        q, k, None, None, 512, m, indices=i, is_fp8_kvcache=True,
        topk_length=torch.zeros(5, dtype=torch.int32)),
     spmla.InvalidArgumentError, "topk_length"),
])
def test_bad_input_raises_spmla_errors(rng, call, err, match):
    k_cache, _, _ = _cache(rng, "v32_fp8", 2, 4)
    q = torch.zeros((2, 1, 4, 576), dtype=torch.bfloat16).normal_()
    idx = torch.zeros((2, 1, 8), dtype=torch.int32)
    meta, _ = flash_mla.get_mla_metadata()
    with pytest.raises(err, match=match):
        call(q, k_cache, idx, meta)


@pytest.mark.parametrize("s_q,h,d,topk,with_len,with_sink", [
    (5, 16, 576, 64, True, True), (3, 7, 512, 33, False, True), (4, 64, 576, 100, True, False),
])
def test_sparse_fwd_prefill(rng, s_q, h, d, topk, with_len, with_sink):
    """flash_mla_sparse_fwd: bf16 kv [s_kv, 1, d], indices [s_q, 1, topk] (-1 and >= s_kv
    invalid), topk_length [s_q]; returns (out, max_logits, lse)."""
    s_kv = 90
    kv_np = rand_bf16(rng, (s_kv, 1, d), 0.5)
    ref = R.RefCache(kv_np.view(np.uint8).reshape(s_kv, 2 * d), "bf16", 1, d)
    idx = rng.integers(0, s_kv, (s_q, 1, topk)).astype(np.int32)
    idx[0, 0, :3] = [-1, s_kv, s_kv + 1000]
    lens = rng.integers(0, topk + 1, s_q).astype(np.int32) if with_len else None
    sink = rng.standard_normal(h).astype(np.float32) if with_sink else None
    q = torch.from_numpy(rand_bf16(rng, (s_q, h, d)).view(np.int16)).view(torch.bfloat16)
    kv = torch.from_numpy(kv_np.view(np.int16)).view(torch.bfloat16)
    scale = d ** -0.5 * 1.1
    t = torch.from_numpy
    out, max_logits, lse = flash_mla.flash_mla_sparse_fwd(
        q, kv, t(idx), scale, attn_sink=t(sink) if sink is not None else None,
        topk_length=t(lens) if lens is not None else None)
    assert out.shape == (s_q, h, 512) and max_logits.shape == (s_q, h) == lse.shape
    ro, rl, rm = R.sparse_attention(q.float().numpy(), [(ref, idx[:, 0], lens)], sink, scale)
    assert_attention_close(out.float().numpy(), lse.numpy(), ro, rl, max_logits.numpy(), rm)


def test_import_spmla_does_not_import_torch():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "import sys, spmla; spmla.info(); "
                        "assert 'torch' not in sys.modules, 'spmla imported torch'"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("marker", [
    "import spmla.flash_mla as flash_mla",
    pytest.param("import spmla.torch ", marks=pytest.mark.slow),  # torch.compile with inductor
])
def test_readme_engine_examples_run(tmp_path, marker):
    """bindings/python/README.md's engine examples run as written (CPU torch)."""
    import pathlib
    import re
    import subprocess
    import sys

    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
              if marker in b]
    assert len(blocks) == 1, f"one README example with {marker!r} expected"
    script = tmp_path / "example.py"
    script.write_text(blocks[0] + "\nprint('EXAMPLE-OK')\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=900, cwd=tmp_path)
    assert r.returncode == 0 and "EXAMPLE-OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_bf16_kv_cache_decode(rng):
    """Beyond FlashMLA: a bf16 k_cache [nb, bs, 1, 576] with is_fp8_kvcache=False."""
    b, s_q, h, topk, bs, nb = 2, 2, 4, 19, 5, 4
    kv = rand_bf16(rng, (nb, bs, 1, 576), 0.5)
    ref = R.RefCache(kv.view(np.uint8).reshape(nb, bs * 576 * 2), "bf16", bs, 576)
    idx = rng.integers(-1, nb * bs, (b, s_q, topk)).astype(np.int32)
    q = torch.from_numpy(rand_bf16(rng, (b, s_q, h, 576)).view(np.int16)).view(torch.bfloat16)
    meta, _ = flash_mla.get_mla_metadata()
    k_cache = torch.from_numpy(kv.view(np.int16)).view(torch.bfloat16)
    for _ in range(2):
        out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, meta,
                                                    indices=torch.from_numpy(idx))
        ro, rl, _ = _ref(q.float().numpy(), [(ref, idx, None)], None, None)
        _check(out, lse, ro, rl, b, s_q, h)
