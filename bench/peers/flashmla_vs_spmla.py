#!/usr/bin/env python3
"""Side-by-side sparse MLA benchmark: spmla against FlashMLA's Hopper (sm_90a) kernels.

Issue 16, item 1. Not a test: a measurement that also checks spmla's output against FlashMLA's.

What it does, in one process on one GPU:
  * builds each row's inputs once (q, a paged KV cache, top-k slot lists, window lists, sink) and
    hands the SAME tensors to both libraries: FlashMLA through its Python API
    (``flash_mla_sparse_fwd`` for prefill, ``get_mla_metadata`` + ``flash_mla_with_kvcache`` for
    the sparse FP8 decode) and spmla through its torch operators
    (``torch.ops.spmla.sparse_attention_plan`` once, then ``sparse_attention_run`` per call: the
    plan's fast path; ``--spmla-api plan`` uses ``spmla.SparseAttentionPlan.run`` instead), on
    spmla's ``cuda`` backend (checked; the run stops if spmla would use another backend);
  * times each call with CUDA events around that call alone: before every timed call a 256 MiB
    buffer is overwritten (the 50-60 MB L2 holds none of the inputs) and the GPU is kept busy
    for ~0.2 ms (``torch.cuda._sleep``) so that the host has queued the call before the GPU
    reaches it (Python overhead of either library stays out of the number); warm-up calls
    first (FlashMLA's scheduler metadata and spmla's plan are made before timing); the median
    of ``--reps`` calls, over ``--rounds`` alternating rounds (spmla, FlashMLA, spmla, ...);
  * compares spmla's output with FlashMLA's on the same inputs (docs/SPEC.md tolerance:
    ||out_s - out_f|| / ||out_f|| < 1e-2 and max |lse_s - lse_f| < 1e-3 * max(1, |lse_f|);
    every output value finite). A row beyond that is marked FAIL and the exit code is 1.
    Both are also compared with a float64 reference on a few sampled tokens (own decoder of the
    cache bytes, written from docs/SPEC.md), reported in results.json;
  * checks once per cache layout that spmla reads the bytes as FlashMLA's documented layout
    (our decoder of the bytes vs ``spmla.kv_cache_gather`` on sampled slots);
  * measures the two ceilings in the same run with torch: bf16 matmul 8192^3 (TFLOP/s, median
    of 10) and a 1 GiB device copy (GB/s, bytes read + written, median of 6).

FLOP count (the one ``spmla bench`` uses, tools/spmla/cmd_bench.cpp, and docs/SPEC.md):
    flops = 2 * T * H * (K + W) * (D_qk + D_v)
  T query tokens in the call (decode: batch * tokens per request), H query heads, K top-k list
  width, W window list width (the V4 extra source; 0 otherwise), D_qk 576 (V3.2) or 512 (V4),
  D_v = 512. Every listed key counts, whether or not two lists share it.
Bytes (for the copy-ceiling ratio, the fewest a call must move): each distinct KV row any list
  names read once (656 B V3.2 FP8, 584 B V4 FP8, 1152 B BF16 D 576), q read, out + lse written,
  the index lists read.

Rows (issue 16): V3.2 prefill from BF16 KV (T 4096, H 128, K 2048; S_kv 8K / 32K / 128K); V3.2 FP8
decode (context 32K, 2 tokens per request; H 128 batch 2 / 64 / 128, H 64 batch 128); V4 FP8 decode
(H 64, batch 128, top-k 512 over a 4x compressed cache + a 128-token window from a ring cache,
attention sink); and spmla-only rows FlashMLA cannot run (H 16 / 32, K 2000, BF16-KV decode).

Output: a markdown table on stdout and in --out DIR (table.md, results.json, results.png).
Progress lines go to stderr. Exit codes: 0 every row ran and matched; 1 a row failed (error or
mismatch) or the setup failed; 2 FlashMLA could not be used (the reason is printed; the spmla
columns are still measured).

--dry-run (no GPU): builds every row's inputs on the CPU at tiny sizes, checks them against both
APIs' documented requirements, runs spmla (its CPU backend) and, as a stand-in for FlashMLA's
module, spmla.flash_mla (the same signatures) through the very code paths the GPU run uses, and
compares both with the float64 reference.

FlashMLA is imported from --flashmla-path (default .carry/peer: FlashMLA's Python package with
the extension bench/peers/link-flashmla linked there); see bench/peers/README.md.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
D_V = 512
ROW_BYTES = {"v32": 656, "v4": 584, "bf16": 576 * 2}
SPEC_OUT_TOL = 1e-2  # relative L2 error of out (docs/SPEC.md, sparse_attention)
SPEC_LSE_TOL = 1e-3  # |lse - ref| / max(1, |ref|)
BLOCK = 64           # tokens per cache page (the SPEC benchmark block size)
T0 = time.time()


def log(msg):
    print(f"[peer {time.time() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Rows


class Row:
    """One benchmark shape. kind: prefill | decode; model: v32 (D 576) | v4 (D 512); kv: the
    main cache's format (fp8 | bf16)."""

    def __init__(self, key, kind, model, kv, H, K, *, W=0, batch=1, s_q=2, T=None, S_kv=None,
                 ctx=32768, quick=False, peer_reason=None, compare=None, label=None):
        self.key, self.kind, self.model, self.kv = key, kind, model, kv
        self.H, self.K, self.W = H, K, W
        self.batch, self.s_q, self.T_prefill, self.S_kv, self.ctx = batch, s_q, T, S_kv, ctx
        self.quick = quick
        self.peer_reason = peer_reason  # None: FlashMLA runs it; else why not
        self.compare = compare          # (other row key, "per-head rate" | "time")
        self.label = label or key

    @property
    def d_qk(self):
        return 512 if self.model == "v4" else 576

    def sizes(self, dry):
        """The row's sizes; tiny ones for --dry-run (same H, same structure)."""
        if self.kind == "prefill":
            if dry:
                return dict(T=8, S_kv=512, K=128 if self.K % 128 == 0 else 120, W=0)
            return dict(T=self.T_prefill, S_kv=self.S_kv, K=self.K, W=0)
        if dry:
            b = min(self.batch, 2)
            ctx = 1024
            k = 64 if self.K % 64 == 0 else 60
            return dict(batch=b, s_q=self.s_q, ctx=ctx, K=k, W=64 if self.W else 0, T=b * self.s_q)
        return dict(batch=self.batch, s_q=self.s_q, ctx=self.ctx, K=self.K, W=self.W,
                    T=self.batch * self.s_q)

    def flops(self, sz):
        return 2.0 * sz["T"] * self.H * (sz["K"] + sz["W"]) * (self.d_qk + D_V)


def all_rows():
    pre = "V3.2 prefill BF16 KV T=4096 H=128"
    rows = [
        Row("prefill-8k", "prefill", "v32", "bf16", 128, 2048, T=4096, S_kv=8192,
            label=f"{pre} K=2048 S_kv=8K"),
        Row("prefill-32k", "prefill", "v32", "bf16", 128, 2048, T=4096, S_kv=32768, quick=True,
            label=f"{pre} K=2048 S_kv=32K"),
        Row("prefill-128k", "prefill", "v32", "bf16", 128, 2048, T=4096, S_kv=131072,
            label=f"{pre} K=2048 S_kv=128K"),
        Row("prefill-32k-k2000", "prefill", "v32", "bf16", 128, 2000, T=4096, S_kv=32768,
            peer_reason="FlashMLA: top-k must be a multiple of 128 for sm90 prefill",
            compare=("prefill-32k", "time"), label=f"{pre} K=2000 S_kv=32K"),
    ]
    dec = "V3.2 FP8 decode ctx=32K s_q=2"
    for h, b, quick in ((128, 2, True), (128, 64, False), (128, 128, True), (64, 128, True)):
        rows.append(Row(f"decode-h{h}-b{b}", "decode", "v32", "fp8", h, 2048, batch=b, quick=quick,
                        label=f"{dec} H={h} batch={b} K=2048"))
    rows.append(Row("v4-decode-h64-b128", "decode", "v4", "fp8", 64, 512, W=128, batch=128,
                    quick=True,
                    label="V4 FP8 decode ctx=32K s_q=2 H=64 batch=128 K=512+128 window, sink"))
    for h, quick in ((16, True), (32, False)):
        rows.append(Row(f"decode-h{h}-b128", "decode", "v32", "fp8", h, 2048, batch=128,
                        quick=quick, peer_reason="FlashMLA: h_q must be 64 or 128",
                        compare=("decode-h64-b128", "per-head rate"),
                        label=f"{dec} H={h} batch=128 K=2048"))
    rows.append(Row("decode-h128-b128-k2000", "decode", "v32", "fp8", 128, 2000, batch=128,
                    quick=True, peer_reason="FlashMLA: top-k must be a multiple of 64",
                    compare=("decode-h128-b128", "time"),
                    label=f"{dec} H=128 batch=128 K=2000"))
    rows.append(Row("decode-bf16-h128-b64", "decode", "v32", "bf16", 128, 2048, batch=64,
                    quick=True, peer_reason="FlashMLA: sparse decode reads FP8 caches only",
                    label="V3.2 BF16-KV decode ctx=32K s_q=2 H=128 batch=64 K=2048"))
    return rows


# --------------------------------------------------------------------------------------------
# Inputs (our own construction of the cache bytes, from docs/SPEC.md's layout table)


def _fp8_rand(torch, n, d, dev, gen):
    """n x d random E4M3FN codes (uint8) of N(0,1) values: never NaN."""
    return torch.randn(n, d, device=dev, generator=gen).to(torch.float8_e4m3fn).view(torch.uint8)


def _bf16_bytes(torch, n, d, dev, gen):
    return torch.randn(n, d, device=dev, generator=gen).to(torch.bfloat16).view(torch.uint8)


def make_v32_cache(torch, pages, dev, gen, chunk=1 << 19):
    """uint8 [pages, BLOCK*656]: per token [512 fp8 NoPE | 4 fp32 scales (one per 128) |
    64 bf16 RoPE] (V32_FP8 = FlashMLA's fp8_ds_mla)."""
    data = torch.empty(pages, BLOCK * 656, dtype=torch.uint8, device=dev)
    rows = data.view(pages * BLOCK, 656)
    for s in range(0, rows.shape[0], chunk):
        n = min(chunk, rows.shape[0] - s)
        r = rows[s:s + n]
        r[:, :512] = _fp8_rand(torch, n, 512, dev, gen)
        exps = torch.randint(-2, 2, (n, 4), device=dev, generator=gen).float()
        r[:, 512:528] = torch.exp2(exps).view(torch.uint8)
        r[:, 528:656] = _bf16_bytes(torch, n, 64, dev, gen)
    return data


def v4_page_bytes():
    return (BLOCK * 584 + 575) // 576 * 576


def make_v4_cache(torch, pages, dev, gen, chunk=1 << 10):
    """uint8 [pages, roundup(BLOCK*584, 576)]: per page BLOCK data rows of 576 B
    [448 fp8 NoPE | 64 bf16 RoPE], then BLOCK scale rows of 8 B [7 UE8M0 | pad 0], then zero
    padding (V4_FP8 = FlashMLA's MODEL1 layout as its tests allocate it)."""
    pb = v4_page_bytes()
    data = torch.zeros(pages, pb, dtype=torch.uint8, device=dev)
    for s in range(0, pages, chunk):
        n = min(chunk, pages - s)
        d = data[s:s + n, :BLOCK * 576].view(n, BLOCK, 576)
        d[:, :, :448] = _fp8_rand(torch, n * BLOCK, 448, dev, gen).view(n, BLOCK, 448)
        d[:, :, 448:] = _bf16_bytes(torch, n * BLOCK, 64, dev, gen).view(n, BLOCK, 128)
        sc = data[s:s + n, BLOCK * 576:BLOCK * 584].view(n, BLOCK, 8)
        sc[:, :, :7] = (127 + torch.randint(-2, 2, (n, BLOCK, 7), device=dev, generator=gen)).to(torch.uint8)
    return data


def decode_rows(torch, layout, cache, slots):
    """Our decoder (docs/SPEC.md): float32 [N, D] key rows of the given slot ids."""
    slots = slots.long()
    page, off = slots // BLOCK, slots % BLOCK
    if layout == "bf16":  # cache [pages, BLOCK, D] bf16
        return cache[page, off].float()
    flat = cache.reshape(-1)
    pb = cache.shape[1]
    if layout == "v32":
        base = page * pb + off * 656
        b = flat[base[:, None] + torch.arange(656, device=cache.device)]
        nope = b[:, :512].contiguous().view(torch.float8_e4m3fn).float()
        scales = b[:, 512:528].contiguous().view(torch.float32)
        rope = b[:, 528:656].contiguous().view(torch.bfloat16).float()
        return torch.cat([nope * scales.repeat_interleave(128, dim=1), rope], dim=1)
    # v4
    base = page * pb + off * 576
    b = flat[base[:, None] + torch.arange(576, device=cache.device)]
    sb = flat[(page * pb + BLOCK * 576 + off * 8)[:, None] + torch.arange(7, device=cache.device)]
    nope = b[:, :448].contiguous().view(torch.float8_e4m3fn).float()
    scales = torch.exp2(sb.float() - 127.0)
    rope = b[:, 448:576].contiguous().view(torch.bfloat16).float()
    return torch.cat([nope * scales.repeat_interleave(64, dim=1), rope], dim=1)


def random_positions(torch, rows, span, k, dev, gen, chunk=512):
    """[rows, k] distinct positions in [0, span), ascending (like a top-k output)."""
    out = torch.empty(rows, k, dtype=torch.int64, device=dev)
    for s in range(0, rows, chunk):
        n = min(chunk, rows - s)
        r = torch.rand(n, span, device=dev, generator=gen)
        out[s:s + n] = r.topk(k, dim=1).indices.sort(dim=1).values
        del r
    return out


class Inputs:
    pass


def build_inputs(torch, row, sz, dev, seed):
    """Every tensor of one row, shared by both libraries."""
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    x = Inputs()
    x.row, x.sz = row, sz
    T, H, D = sz["T"], row.H, row.d_qk
    x.scale = 1.0 / math.sqrt(D)
    x.q = torch.randn(T, H, D, device=dev, generator=gen).to(torch.bfloat16)
    x.sink = None
    x.extra = None
    if row.kind == "prefill":
        S = sz["S_kv"]
        x.kv3 = torch.randn(S, 1, D, device=dev, generator=gen).to(torch.bfloat16)  # FlashMLA [s_kv, 1, d]
        x.layout, x.cache = "bf16", x.kv3.view(S // BLOCK, BLOCK, D)                  # spmla: pages of 64
        x.idx = random_positions(torch, T, S, sz["K"], dev, gen).to(torch.int32)      # slot = token index
        return x
    b, s_q, ctx, K = sz["batch"], sz["s_q"], sz["ctx"], sz["K"]
    req = torch.arange(T, device=dev) // s_q
    if row.model == "v32":
        per_req = ctx // BLOCK
        pages = b * per_req
        if row.kv == "fp8":
            x.layout, x.cache = "v32", make_v32_cache(torch, pages, dev, gen)
        else:
            x.layout = "bf16"
            x.cache = torch.randn(pages, BLOCK, D, device=dev, generator=gen).to(torch.bfloat16)
        bt = torch.randperm(pages, device=dev, generator=gen).view(b, per_req)
        pos = random_positions(torch, T, ctx, K, dev, gen)
    else:  # v4: top-k over the 4x compressed cache, plus a window over a ring cache
        ctx_c = ctx // 4
        per_req = ctx_c // BLOCK
        pages = b * per_req
        x.layout, x.cache = "v4", make_v4_cache(torch, pages, dev, gen)
        bt = torch.randperm(pages, device=dev, generator=gen).view(b, per_req)
        pos = random_positions(torch, T, ctx_c, K, dev, gen)
        W = sz["W"]
        ring = 2 * W                                  # tokens kept per request in the window cache
        wper = ring // BLOCK
        wpages = b * wper
        wcache = make_v4_cache(torch, wpages, dev, gen)
        wbt = torch.randperm(wpages, device=dev, generator=gen).view(b, wper)
        tok_pos = (ctx - s_q) + (torch.arange(T, device=dev) % s_q)        # the query's position
        wpos = tok_pos[:, None] - (W - 1) + torch.arange(W, device=dev)[None, :]
        rp = wpos % ring
        widx = wbt[req[:, None], rp // BLOCK] * BLOCK + rp % BLOCK
        x.extra = ("v4", wcache, widx.to(torch.int32))
        x.sink = torch.randn(H, device=dev, generator=gen).float()
    x.idx = (bt[req[:, None], pos // BLOCK] * BLOCK + pos % BLOCK).to(torch.int32)
    return x


def flashmla_views(torch, x):
    """FlashMLA's shapes of the same tensors (views, no copies)."""
    row, sz = x.row, x.sz
    v = {}
    if row.kind == "prefill":
        v["q"], v["kv"], v["indices"] = x.q, x.kv3, x.idx.view(sz["T"], 1, sz["K"])
        return v
    b, s_q = sz["batch"], sz["s_q"]
    v["q"] = x.q.view(b, s_q, row.H, row.d_qk)
    v["indices"] = x.idx.view(b, s_q, sz["K"])

    def kview(c, layout):
        if layout == "v32":
            return c.view(c.shape[0], BLOCK, 1, 656)
        # MODEL1: [blocks, BLOCK, 1, 584] over the padded pages (block stride = padded page)
        return c.as_strided((c.shape[0], BLOCK, 1, 584), (c.stride(0), 584, 584, 1))

    v["kv"] = kview(x.cache, x.layout)
    if x.extra is not None:
        v["extra_kv"] = kview(x.extra[1], x.extra[0])
        v["extra_indices"] = x.extra[2].view(b, s_q, sz["W"])
    return v


def check_flashmla_contract(torch, x, v):
    """FlashMLA's documented input requirements at commit 9241ae3 (its docstrings and the checks
    of csrc/api/*.h and the sm90 kernels), checked before calling it: a violation there aborts
    the process (host asserts) instead of raising."""
    row, sz = x.row, x.sz
    errs = []

    def need(cond, what):
        if not cond:
            errs.append(what)

    need(v["q"].dtype == torch.bfloat16 and v["q"].stride(-1) == 1, "q bf16, last dim contiguous")
    need(row.H in (64, 128), f"h_q 64 or 128 (got {row.H})")
    need(v["indices"].dtype == torch.int32 and v["indices"].stride(-1) == 1, "indices int32")
    if row.kind == "prefill":
        need(tuple(v["q"].shape) == (sz["T"], row.H, row.d_qk), "q [s_q, h_q, d_qk]")
        need(v["kv"].dtype == torch.bfloat16 and tuple(v["kv"].shape) == (sz["S_kv"], 1, row.d_qk),
             "kv bf16 [s_kv, 1, d_qk]")
        need(tuple(v["indices"].shape) == (sz["T"], 1, sz["K"]), "indices [s_q, 1, topk]")
        need(sz["K"] % 128 == 0, "topk % 128 == 0 (sm90 prefill: 2 * B_TOPK)")
    else:
        bpt = 656 if row.d_qk == 576 else 584
        need(tuple(v["q"].shape) == (sz["batch"], sz["s_q"], row.H, row.d_qk), "q [b, s_q, h_q, d]")
        for name in ("kv", "extra_kv"):
            if name in v:
                t = v[name]
                need(t.dtype in (torch.uint8, torch.int8, torch.float8_e4m3fn), f"{name} fp8/uint8/int8")
                need(t.dim() == 4 and t.shape[1] == BLOCK and t.shape[2] == 1 and t.shape[3] == bpt,
                     f"{name} [blocks, block_size, 1, {bpt}]")
                need(t.stride(1) == bpt and t.stride(3) == 1, f"{name}: rows of one block contiguous")
                if bpt == 584:
                    need(t.stride(0) % 576 == 0, f"{name}: MODEL1 block stride a multiple of 576")
        need(tuple(v["indices"].shape) == (sz["batch"], sz["s_q"], sz["K"]), "indices [b, s_q, topk]")
        need(sz["K"] % 64 == 0, "topk % 64 == 0 (sm90 decode TOPK_BLOCK_SIZE)")
        if "extra_indices" in v:
            need(tuple(v["extra_indices"].shape) == (sz["batch"], sz["s_q"], sz["W"]),
                 "extra_indices [b, s_q, extra_topk]")
            need(row.d_qk == 512, "an extra cache only with MODEL1 (d 512)")
        if x.sink is not None:
            need(x.sink.dtype == torch.float32 and tuple(x.sink.shape) == (row.H,), "attn_sink fp32 [h_q]")
    return errs


def check_spmla_contract(torch, x):
    """spmla's documented shapes (bindings/python/src/spmla/torch.py, docs/SPEC.md)."""
    row, sz = x.row, x.sz
    errs = []
    T, H, D = sz["T"], row.H, row.d_qk
    if tuple(x.q.shape) != (T, H, D) or x.q.dtype != torch.bfloat16:
        errs.append("q bf16 [T, H, D_qk]")
    if tuple(x.idx.shape) != (T, sz["K"]) or x.idx.dtype != torch.int32:
        errs.append("indices int32 [T, K]")
    if x.layout == "v32" and x.cache.shape[1] != BLOCK * 656:
        errs.append("V32_FP8 page = 656 * block_size bytes")
    if x.layout == "v4" and x.cache.shape[1] != v4_page_bytes():
        errs.append("V4_FP8 page = roundup(584 * block_size, 576) bytes")
    if x.extra is not None and tuple(x.extra[2].shape) != (T, sz["W"]):
        errs.append("extra_indices int32 [T, W]")
    if not 1 <= H <= 128:
        errs.append("H in 1..128")
    return errs


# --------------------------------------------------------------------------------------------
# The two libraries


SPMLA_LAYOUT = {"v32": "v32_fp8", "v4": "v4_fp8", "bf16": "bf16"}


def spmla_runner(torch, spmla, x, api):
    """A callable running spmla on x's tensors: plan once (not timed), run per call."""
    row, sz = x.row, x.sz
    T, H = sz["T"], row.H
    out = torch.empty(T, H, D_V, dtype=torch.bfloat16, device=x.q.device)
    lse = torch.empty(T, H, dtype=torch.float32, device=x.q.device)
    layout = SPMLA_LAYOUT[x.layout]
    head_dim = row.d_qk if x.layout == "bf16" else 0
    if api == "plan":
        mk = lambda lay, c: spmla.KVCache(c, SPMLA_LAYOUT[lay], block_size=BLOCK, head_dim=head_dim
                                          if lay == "bf16" else 0)
        cache = mk(x.layout, x.cache)
        ex = mk(x.extra[0], x.extra[1]) if x.extra is not None else None
        eidx = x.extra[2] if x.extra is not None else None
        plan = spmla.SparseAttentionPlan(x.q, cache, x.idx, extra_kv_cache=ex, extra_indices=eidx,
                                         attn_sink=x.sink, scale=x.scale)

        def run():
            plan.run(x.q, cache, x.idx, extra_kv_cache=ex, extra_indices=eidx, attn_sink=x.sink,
                     out=out, lse=lse)
            return out, lse
        return run
    kw = dict(lengths=None, attn_sink=x.sink, scale=x.scale, head_dim=head_dim)
    if x.extra is not None:
        kw.update(extra_kv_cache=x.extra[1], extra_indices=x.extra[2],
                  extra_layout=SPMLA_LAYOUT[x.extra[0]], extra_block_size=BLOCK)
    nbytes = spmla.torch.sparse_attention_workspace_size(x.q, x.cache, x.idx, layout, BLOCK, **kw)
    ws = torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=x.q.device)
    torch.ops.spmla.sparse_attention_plan(x.q, x.cache, x.idx, layout, BLOCK, ws, **kw)
    run_op = torch.ops.spmla.sparse_attention_run

    def run():
        run_op(x.q, x.cache, x.idx, layout, BLOCK, ws, out, lse, **kw)
        return out, lse
    return run


def flashmla_runner(torch, fm, x, v):
    """A callable running FlashMLA on the same tensors; returns (out [T, H, 512], lse [T, H])."""
    row, sz = x.row, x.sz
    T, H = sz["T"], row.H
    if row.kind == "prefill":
        def run():
            out, _max_logits, lse = fm.flash_mla_sparse_fwd(v["q"], v["kv"], v["indices"], x.scale, D_V)
            return out, lse
        return run
    sched, _ = fm.get_mla_metadata()

    def run():
        out, lse = fm.flash_mla_with_kvcache(
            v["q"], v["kv"], None, None, D_V, sched, None, softmax_scale=x.scale, causal=False,
            is_fp8_kvcache=True, indices=v["indices"], attn_sink=x.sink,
            extra_k_cache=v.get("extra_kv"), extra_indices_in_kvcache=v.get("extra_indices"))
        # out [b, s_q, h, 512]; lse [b, h, s_q]
        return out.reshape(T, H, D_V), lse.transpose(1, 2).reshape(T, H)
    return run


# --------------------------------------------------------------------------------------------
# Timing, comparison, reference


class Timer:
    def __init__(self, torch, dev):
        self.torch, self.dev = torch, dev
        self.gpu = dev.type == "cuda"
        if self.gpu:
            self.flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
            self.sleep = getattr(torch.cuda, "_sleep", None)
        self.n = 0

    def _prepare(self):
        self.n += 1
        self.flush.fill_(self.n & 0xFF)        # evicts L2 (256 MiB written)
        if self.sleep is not None:
            self.sleep(400_000)                # ~0.2 ms of GPU time: the host queues the call meanwhile

    def time(self, fn, reps, warmup):
        """Per-call times in µs (median taken by the caller)."""
        torch = self.torch
        for _ in range(warmup):
            fn()
        if not self.gpu:
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t) * 1e6)
            return ts
        torch.cuda.synchronize()
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
        for s, e in ev:
            self._prepare()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1e3 for s, e in ev]


def compare(torch, out_s, lse_s, out_f, lse_f, chunk=256):
    """spmla against FlashMLA with docs/SPEC.md's measures (FlashMLA as the reference)."""
    T = out_s.shape[0]
    num = den = 0.0
    max_abs = max_ref = lse_err = 0.0
    finite = True
    for s in range(0, T, chunk):
        a, b = out_s[s:s + chunk].float(), out_f[s:s + chunk].float()
        finite = finite and bool(torch.isfinite(a).all()) and bool(torch.isfinite(lse_s[s:s + chunk]).all())
        d = a - b
        num += float((d * d).sum())
        den += float((b * b).sum())
        max_abs = max(max_abs, float(d.abs().max()))
        max_ref = max(max_ref, float(b.abs().max()))
        la, lb = lse_s[s:s + chunk].float(), lse_f[s:s + chunk].float()
        lse_err = max(lse_err, float(((la - lb).abs() / lb.abs().clamp_min(1.0)).max()))
    rel_l2 = math.sqrt(num) / math.sqrt(den) if den > 0 else (0.0 if num == 0 else math.inf)
    r = dict(rel_l2=rel_l2, max_abs=max_abs, max_rel=max_abs / max_ref if max_ref > 0 else math.inf,
             lse_err=lse_err, finite=finite)
    r["ok"] = bool(finite and rel_l2 < SPEC_OUT_TOL and lse_err < SPEC_LSE_TOL)
    return r


def reference(torch, x, tokens):
    """float64 attention for the sampled tokens from our decoder of the cache bytes:
    (out [n, H, 512], lse [n, H])."""
    outs, lses = [], []
    for t in tokens:
        slots = x.idx[t]
        keys = decode_rows(torch, x.layout, x.cache, slots)
        if x.extra is not None:
            keys = torch.cat([keys, decode_rows(torch, x.extra[0], x.extra[1], x.extra[2][t])], 0)
        k = keys.double()
        q = x.q[t].double()
        logits = (q @ k.T) * x.scale                     # [H, n_keys]
        lse = torch.logsumexp(logits, dim=1)
        p = torch.exp(logits - lse[:, None])
        out = p @ k[:, :D_V]
        if x.sink is not None:
            out = out / (1.0 + torch.exp(x.sink.double() - lse))[:, None]
        outs.append(out)
        lses.append(lse)
    return torch.stack(outs), torch.stack(lses)


def ref_error(torch, out, lse, ref_out, ref_lse, tokens):
    o = out[tokens].double()
    return dict(rel_l2=float((o - ref_out).norm() / ref_out.norm()),
                lse_err=float(((lse[tokens].double() - ref_lse).abs() / ref_lse.abs().clamp_min(1)).max()))


def unique_bytes(torch, x):
    """The fewest bytes one call moves (see the module docstring)."""
    row, sz = x.row, x.sz
    T, H = sz["T"], row.H
    rb = row.d_qk * 2 if x.layout == "bf16" else ROW_BYTES[x.layout]
    n = int(torch.unique(x.idx).numel()) * rb
    if x.extra is not None:
        n += int(torch.unique(x.extra[2]).numel()) * ROW_BYTES[x.extra[0]]
    n += T * H * row.d_qk * 2 + T * H * (D_V * 2 + 4) + T * (sz["K"] + sz["W"]) * 4
    return n


def layout_check(torch, spmla, x, gen_slots=64):
    """spmla's reading of the cache bytes vs our decoder (FlashMLA's documented layout)."""
    n = min(gen_slots, x.idx.numel())
    slots = x.idx.reshape(-1)[torch.linspace(0, x.idx.numel() - 1, n, device=x.idx.device).long()]
    ours = decode_rows(torch, x.layout, x.cache, slots).to(torch.bfloat16).float()
    head_dim = x.row.d_qk if x.layout == "bf16" else 0
    theirs = torch.ops.spmla.kv_cache_gather(x.cache, slots, SPMLA_LAYOUT[x.layout], BLOCK,
                                             head_dim=head_dim).float()
    return float((ours - theirs).abs().max())


def ceilings(torch, dev):
    r = {}
    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    ts = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    r["matmul_bf16_tflops"] = 2 * n ** 3 / (statistics.median(ts) * 1e-3) / 1e12
    del a, b
    x = torch.empty(1 << 28, device=dev, dtype=torch.float32)
    x.normal_()
    y = torch.empty_like(x)
    for _ in range(2):
        y.copy_(x)
    ts = []
    for _ in range(6):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        y.copy_(x)
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    r["copy_gbps"] = 2 * x.numel() * 4 / (statistics.median(ts) * 1e-3) / 1e9
    del x, y
    torch.cuda.empty_cache()
    return r


# --------------------------------------------------------------------------------------------
# Output


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(results, ceil, dry):
    h = ("| row | spmla µs | spmla TFLOP/s | FlashMLA µs | FlashMLA TFLOP/s | spmla ÷ FlashMLA "
         "| of matmul (spmla / FlashMLA) | of copy (spmla / FlashMLA) | out rel-L2 · max abs · lse err "
         "| status | note |")
    lines = [h, "|" + "---|" * 11]
    for r in results:
        s, f = r.get("spmla") or {}, r.get("flashmla") or {}
        chk = r.get("check")
        chk_s = (f"{chk['rel_l2']:.2e} · {chk['max_abs']:.2e} · {chk['lse_err']:.1e}" if chk else "—")
        mm = ceil.get("matmul_bf16_tflops") if ceil else None
        cp = ceil.get("copy_gbps") if ceil else None

        def pair(key, c):
            a, b = s.get(key), f.get(key)
            if not c:
                return "—"
            return f"{fmt(a / c if a else None, '.3f')} / {fmt(b / c if b else None, '.3f')}"
        ratio = (s["tflops"] / f["tflops"]) if s.get("tflops") and f.get("tflops") else None
        lines.append(
            f"| {r['label']} | {fmt(s.get('us'), '.1f')} | {fmt(s.get('tflops'), '.1f')} "
            f"| {fmt(f.get('us'), '.1f')} | {fmt(f.get('tflops'), '.1f')} | {fmt(ratio, '.2f')} "
            f"| {pair('tflops', mm)} | {pair('gbps', cp)} | {chk_s} | {r['status']} | {r.get('note', '')} |")
    head = []
    if dry:
        head.append("**Dry run** (CPU, tiny sizes; peer = spmla.flash_mla stand-in): times are meaningless.\n")
    if ceil:
        head.append(f"Ceilings of this run (torch): bf16 matmul {ceil['matmul_bf16_tflops']:.1f} TFLOP/s, "
                    f"device copy {ceil['copy_gbps']:.0f} GB/s (read + write).\n")
    return "\n".join(head + lines) + "\n"


def plot(results, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # matplotlib is on the device image; not needed for the table
        log(f"no plot: matplotlib unavailable ({e})")
        return False
    rows = [r for r in results if (r.get("spmla") or {}).get("tflops")]
    if not rows:
        return False
    names = [r["key"] for r in rows]
    s = [r["spmla"]["tflops"] for r in rows]
    f = [(r.get("flashmla") or {}).get("tflops") or 0.0 for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(rows) + 3), 8),
                                   gridspec_kw=dict(height_ratios=[3, 2]))
    xs = range(len(rows))
    w = 0.4
    ax1.bar([i - w / 2 for i in xs], s, w, label="spmla")
    ax1.bar([i + w / 2 for i in xs], f, w, label="FlashMLA (sm90)")
    ax1.set_ylabel("TFLOP/s")
    ax1.set_xticks(list(xs))
    ax1.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax1.legend()
    ax1.set_title(title, fontsize=9)
    ratio = [a / b if b else 0.0 for a, b in zip(s, f)]
    ax2.bar(list(xs), ratio, 0.6, color=["tab:green" if v >= 1 else "tab:red" for v in ratio])
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_ylabel("spmla ÷ FlashMLA")
    ax2.set_xticks(list(xs))
    ax2.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    for i, v in enumerate(ratio):
        if v:
            ax2.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def import_spmla(path):
    """Makes `import spmla` work: as installed, else from --spmla-path, else from the package
    that bindings/python/run-tests installed into <repo>/build-pyvenv (appended to sys.path, so
    this interpreter's own torch and numpy stay first)."""
    import glob
    import importlib
    if path:
        sys.path.insert(0, os.path.abspath(path))
    try:
        importlib.import_module("spmla")
        return
    except ImportError:
        if path:
            raise
    ver = "python%d.%d" % sys.version_info[:2]
    for site in sorted(glob.glob(os.path.join(REPO, "build-pyvenv", "lib", ver, "site-packages"))):
        if os.path.isdir(os.path.join(site, "spmla")):
            sys.path.append(site)
            log(f"spmla taken from {site}")
            importlib.import_module("spmla")
            return
    raise ImportError(f"no spmla package for {ver} (installed, --spmla-path, or "
                      f"{REPO}/build-pyvenv/lib/{ver}/site-packages)")


def run_title(meta):
    return f"spmla vs FlashMLA — {meta.get('device', 'dry run')} — spmla {meta.get('spmla_commit')}"


def git_commit():
    # gpu-check passes the tree it ran (the device copy has no .git, or a stale one).
    if os.environ.get("SPMLA_SOURCE_LABEL"):
        return os.environ["SPMLA_SOURCE_LABEL"]
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except Exception:
        return None


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="spmla vs FlashMLA (sm90) sparse MLA, side by side on one GPU (issue 16 item 1).",
        epilog="FLOPs = 2*T*H*(K+W)*(D_qk+512) per call, as `spmla bench` counts. Exit codes: 0 ok, "
               "1 a row failed or setup failed, 2 FlashMLA unavailable (spmla rows still run).")
    p.add_argument("--quick", action="store_true",
                   help="fewer shapes and repetitions (fits ~2 minutes on an H100)")
    p.add_argument("--only", choices=("prefill", "decode"), help="only prefill or only decode rows")
    p.add_argument("--rows", default="", help="comma-separated row keys to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--out", help="directory for table.md, results.json, results.png")
    p.add_argument("--reps", type=int, help="timed calls per library per round (default 30; quick 10)")
    p.add_argument("--warmup", type=int, help="untimed calls first (default 3; quick 2)")
    p.add_argument("--rounds", type=int, help="alternating rounds spmla/FlashMLA (default 2; quick 1)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--flashmla-path", default=os.path.join(REPO, ".carry", "peer"),
                   help="folder holding FlashMLA's package flash_mla/ with its linked extension")
    p.add_argument("--no-flashmla", action="store_true", help="spmla rows only")
    p.add_argument("--spmla-path", default="",
                   help="folder holding the spmla package (default: the installed one, else "
                        "<repo>/build-pyvenv's site-packages, where bindings/python/run-tests installs it)")
    p.add_argument("--spmla-api", choices=("ops", "plan"), default="ops",
                   help="ops: torch.ops.spmla plan once + sparse_attention_run (default); "
                        "plan: spmla.SparseAttentionPlan.run")
    p.add_argument("--ref-tokens", type=int, default=4, help="tokens checked against the float64 reference")
    p.add_argument("--dry-run", action="store_true",
                   help="no GPU: tiny inputs on the CPU, contract checks, spmla CPU backend and the "
                        "spmla.flash_mla stand-in for FlashMLA")
    p.add_argument("--replot", metavar="RESULTS_JSON",
                   help="only draw results.png (into --out, default .) from an earlier run's results.json")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.replot:  # a run's results.json again as a plot (gpu-check brings back the json, not the png)
        with open(a.replot) as fh:
            d = json.load(fh)
        title = run_title(d.get("meta", {}))
        out = a.out or "."
        os.makedirs(out, exist_ok=True)
        if not plot(d.get("rows", []), os.path.join(out, "results.png"), title):
            return 1
        log(f"wrote {out}/results.png")
        return 0
    rows = all_rows()
    if a.list:
        for r in rows:
            print(f"{r.key:26s} {'quick ' if r.quick else '      '}"
                  f"{'spmla only' if r.peer_reason else 'both':10s} {r.label}")
        return 0
    if a.quick:
        rows = [r for r in rows if r.quick]
    if a.only:
        rows = [r for r in rows if r.kind == a.only]
    if a.rows:
        want = {k.strip() for k in a.rows.split(",") if k.strip()}
        unknown = want - {r.key for r in all_rows()}
        if unknown:
            print(f"unknown row keys: {sorted(unknown)} (see --list)", file=sys.stderr)
            return 1
        rows = [r for r in all_rows() if r.key in want]
    reps = a.reps or (10 if a.quick else 30)
    warmup = a.warmup if a.warmup is not None else (2 if a.quick else 3)
    rounds = a.rounds or (1 if a.quick else 2)
    if a.dry_run:
        reps, warmup, rounds = 1, 1, 1

    try:
        import torch
    except ImportError as e:
        print(f"torch is not importable: {e}", file=sys.stderr)
        return 1
    dev = torch.device("cpu" if a.dry_run else "cuda")
    if not a.dry_run and not torch.cuda.is_available():
        print("no CUDA device visible to torch (use --dry-run on a machine without a GPU)", file=sys.stderr)
        return 1
    meta = dict(args=vars(a), torch=torch.__version__, python=sys.version.split()[0],
                spmla_commit=git_commit(), rows_run=[r.key for r in rows])
    if not a.dry_run:
        meta["device"] = torch.cuda.get_device_name(0)
        meta["capability"] = list(torch.cuda.get_device_capability(0))
        meta["cuda"] = torch.version.cuda
    log(f"{len(rows)} rows on {meta.get('device', 'cpu (dry run)')}; reps {reps} x {rounds} rounds, warm-up {warmup}")

    # spmla, on its cuda backend
    try:
        import_spmla(a.spmla_path)
        import spmla
        import spmla.torch  # noqa: F401  (registers torch.ops.spmla)
        from spmla._runtime import default_handle, device_of
    except Exception as e:
        print(f"spmla is not importable: {e!r} (install bindings/python first: see bench/peers/README.md)",
              file=sys.stderr)
        return 1
    probe = torch.empty(1, device=dev)
    backend = default_handle(device_of(probe)).backend
    meta["spmla_version"] = spmla.__version__
    meta["spmla_backend"] = backend
    want_backend = "cpu" if a.dry_run else "cuda"
    if backend != want_backend:
        print(f"spmla would run on backend {backend!r}, not {want_backend!r}: {spmla.backends()}",
              file=sys.stderr)
        return 1
    log(f"spmla {spmla.__version__} from {os.path.dirname(spmla.__file__)}, backend {backend}")

    # FlashMLA (or, for --dry-run, spmla's drop-in of its API as a stand-in)
    fm, fm_reason = None, None
    if a.no_flashmla:
        fm_reason = "--no-flashmla"
    elif a.dry_run:
        import spmla.flash_mla as fm
        meta["peer"] = "spmla.flash_mla (stand-in for the dry run)"
    else:
        cap = torch.cuda.get_device_capability(0)
        if cap != (9, 0):
            fm_reason = f"FlashMLA's objects here are sm_90a only; this GPU is sm_{cap[0]}{cap[1]}"
        else:
            sys.path.insert(0, os.path.abspath(a.flashmla_path))
            try:
                import flash_mla as fm
                import flash_mla.cuda  # noqa: F401
                meta["peer"] = f"FlashMLA from {os.path.dirname(fm.__file__)}"
                cf = os.path.join(a.flashmla_path, "PEER_COMMITS")
                if os.path.exists(cf):
                    meta["peer_commits"] = open(cf).read().strip()
            except Exception as e:
                fm = None
                fm_reason = (f"cannot import flash_mla from {a.flashmla_path}: {e!r} "
                             f"(run bench/peers/link-flashmla first; see bench/peers/README.md)")
    if fm_reason:
        log(f"FlashMLA unavailable: {fm_reason}")
        print(f"FlashMLA unavailable: {fm_reason}", file=sys.stderr)
    meta["peer_unavailable"] = fm_reason

    ceil = None
    if not a.dry_run:
        log("ceilings: bf16 matmul 8192^3, 1 GiB device copy")
        ceil = ceilings(torch, dev)
        log(f"ceilings: {ceil['matmul_bf16_tflops']:.1f} TFLOP/s, {ceil['copy_gbps']:.0f} GB/s")
    timer = Timer(torch, dev)
    results, failed = [], False
    layout_checks = {}
    for i, row in enumerate(rows):
        sz = row.sizes(a.dry_run)
        rec = dict(key=row.key, label=row.label, kind=row.kind, model=row.model, kv=row.kv, H=row.H,
                   sizes=sz, flops=row.flops(sz), status="ok", note="")
        results.append(rec)
        x = None
        try:
            log(f"[{i + 1}/{len(rows)}] {row.key}: inputs {sz}")
            x = build_inputs(torch, row, sz, dev, a.seed + i)
            errs = check_spmla_contract(torch, x)
            if errs:
                raise RuntimeError(f"inputs break spmla's contract: {errs}")
            rec["bytes"] = unique_bytes(torch, x)
            lkey = x.layout + ("+" + x.extra[0] if x.extra else "")
            if lkey not in layout_checks:
                layout_checks[lkey] = layout_check(torch, spmla, x)
                log(f"  layout check {lkey}: max |our decoder - spmla gather| = {layout_checks[lkey]}")
                if layout_checks[lkey] != 0.0:
                    rec["status"] = "FAIL"
                    rec["note"] += f"layout check {lkey}: spmla reads other values; "
                    failed = True
            run_s = spmla_runner(torch, spmla, x, a.spmla_api)
            run_f, peer_why = None, row.peer_reason or fm_reason
            if fm is not None and not row.peer_reason:
                v = flashmla_views(torch, x)
                errs = check_flashmla_contract(torch, x, v)
                if errs:
                    peer_why = f"inputs break FlashMLA's contract: {errs}"
                    rec["status"] = "FAIL"
                    failed = True
                else:
                    run_f = flashmla_runner(torch, fm, x, v)
            if run_f is None:
                rec["note"] += f"spmla only ({peer_why}); "
            # outputs of one untimed call each: the comparison
            out_s, lse_s = (t.clone() for t in run_s())
            tok = sorted({int(t) for t in torch.linspace(0, sz["T"] - 1, max(1, a.ref_tokens)).long()})
            ref_o, ref_l = reference(torch, x, tok)
            rec["ref_spmla"] = ref_error(torch, out_s, lse_s, ref_o, ref_l, tok)
            if run_f is not None:
                out_f, lse_f = (t.clone() for t in run_f())
                rec["ref_flashmla"] = ref_error(torch, out_f, lse_f, ref_o, ref_l, tok)
                rec["check"] = compare(torch, out_s, lse_s, out_f, lse_f)
                if not rec["check"]["ok"]:
                    rec["status"] = "FAIL"
                    failed = True
                    msg = (f"MISMATCH {row.key}: spmla vs FlashMLA rel-L2 {rec['check']['rel_l2']:.3e} "
                           f"(tol {SPEC_OUT_TOL}), lse err {rec['check']['lse_err']:.3e} (tol {SPEC_LSE_TOL}), "
                           f"finite {rec['check']['finite']}; vs float64 ref: spmla {rec['ref_spmla']}, "
                           f"FlashMLA {rec['ref_flashmla']}")
                    print(msg, file=sys.stderr)
                    log(msg)
                del out_f, lse_f
            else:
                r = rec["ref_spmla"]
                if not (r["rel_l2"] < SPEC_OUT_TOL and r["lse_err"] < SPEC_LSE_TOL):
                    rec["status"] = "FAIL"
                    failed = True
                    print(f"MISMATCH {row.key}: spmla vs float64 reference {r}", file=sys.stderr)
            del out_s, lse_s
            # timing: alternating rounds
            ts_s, ts_f, per_round = [], [], []
            for rd in range(rounds):
                t = timer.time(run_s, reps, warmup if rd == 0 else 1)
                ts_s += t
                pr = dict(spmla=statistics.median(t))
                if run_f is not None:
                    t = timer.time(run_f, reps, warmup if rd == 0 else 1)
                    ts_f += t
                    pr["flashmla"] = statistics.median(t)
                per_round.append(pr)
            for name, ts in (("spmla", ts_s), ("flashmla", ts_f)):
                if ts:
                    us = statistics.median(ts)
                    rec[name] = dict(us=us, tflops=rec["flops"] / (us * 1e-6) / 1e12,
                                     gbps=rec["bytes"] / (us * 1e-6) / 1e9, min_us=min(ts), max_us=max(ts),
                                     n=len(ts))
            rec["rounds"] = per_round
            msg = f"  spmla {rec['spmla']['us']:.1f} µs {rec['spmla']['tflops']:.1f} TFLOP/s"
            if "flashmla" in rec:
                msg += (f"; FlashMLA {rec['flashmla']['us']:.1f} µs {rec['flashmla']['tflops']:.1f} TFLOP/s"
                        f"; ratio {rec['spmla']['tflops'] / rec['flashmla']['tflops']:.2f}")
            if "check" in rec:
                msg += f"; rel-L2 {rec['check']['rel_l2']:.2e} {'ok' if rec['check']['ok'] else 'FAIL'}"
            log(msg)
        except Exception as e:
            rec["status"] = "error"
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["note"] += f"error: {type(e).__name__}: {str(e)[:200]}; "
            failed = True
            log(f"  ERROR {row.key}: {rec['error']}")
            traceback.print_exc(file=sys.stderr)
        finally:
            x = None
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
    # comparisons between rows (the issue's floors that are stated within spmla)
    by = {r["key"]: r for r in results}
    for row in rows:
        rec = by[row.key]
        if row.compare and row.compare[0] in by and rec.get("spmla") and by[row.compare[0]].get("spmla"):
            other = by[row.compare[0]]["spmla"]
            if row.compare[1] == "per-head rate":  # FLOPs scale with H: TFLOP/s ratio = per-head ratio
                v = rec["spmla"]["tflops"] / other["tflops"]
                rec["note"] += f"per-head rate {v:.2f}x spmla's {row.compare[0]}; "
            else:
                v = rec["spmla"]["us"] / other["us"]
                rec["note"] += f"time {v:.3f}x spmla's {row.compare[0]}; "
            rec["compare"] = dict(row=row.compare[0], what=row.compare[1], value=v)
    if a.dry_run:  # the comparison must catch a wrong output: one token's heads rolled by one
        o = torch.randn(4, 8, D_V).to(torch.bfloat16)
        l = torch.randn(4, 8)
        bad = o.clone()
        bad[1] = bad[1].roll(1, dims=0)
        ok_same, ok_bad = compare(torch, o, l, o, l)["ok"], compare(torch, bad, l, o, l)["ok"]
        meta["selftest_compare"] = dict(identical_ok=ok_same, corrupted_detected=not ok_bad)
        log(f"self-test of the comparison: identical passes {ok_same}, corrupted caught {not ok_bad}")
        if not ok_same or ok_bad:
            failed = True
    for rec in results:
        rec["note"] = rec["note"].strip().rstrip(";")
    code = 1 if failed else (2 if (fm_reason and not a.no_flashmla) else 0)
    meta["layout_checks"] = layout_checks
    meta["ceilings"] = ceil
    meta["exit_code"] = code
    md = table(results, ceil, a.dry_run)
    title = run_title(meta)
    print(f"\n## {title}\n")
    print(md)
    if fm_reason:
        print(f"FlashMLA not run: {fm_reason}\n")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "table.md"), "w") as fh:
            fh.write(f"## {title}\n\n{md}")
            if fm_reason:
                fh.write(f"\nFlashMLA not run: {fm_reason}\n")
        with open(os.path.join(a.out, "results.json"), "w") as fh:
            json.dump(dict(meta=meta, rows=results), fh, indent=1, default=str)
        plotted = plot(results, os.path.join(a.out, "results.png"), title)
        log(f"wrote {a.out}/table.md, results.json" + (", results.png" if plotted else " (no plot)"))
    log(f"done, exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
