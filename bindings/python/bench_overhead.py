#!/usr/bin/env python3
"""Host time of one decode-layer call with a reused plan: Python API vs the C ABI.

    python bindings/python/bench_overhead.py [--calls N] [--repeats R] [--json]

A tiny decode step (T=1 token, H=1 head, K=1 key, V3.2 FP8 cache of 4 pages of 64 tokens) on the
CPU backend, so that the attention itself costs almost nothing and what is measured is the call:
argument conversion, checks, dispatch. Rows:

* ``c_abi``: ``spmla_sparse_attention_run`` alone, repeated in C++ on arguments converted once
  (AttentionRunner.time_c): the floor any binding pays.
* ``plan.run(out=, lse=)``: ``SparseAttentionPlan.run`` from Python with preallocated outputs
  (the fast path: one trip into the extension, one DLPack/buffer conversion per tensor).
* ``plan.run()``: the same, outputs allocated per call.
* ``plan.run (checked path)``: the general path (Python-side checks and views), for comparison.
* with torch installed, the same on torch CPU tensors, through ``torch.ops.spmla`` and
  ``spmla.flash_mla.flash_mla_with_kvcache``.

Each figure is per call, in microseconds: the wall-clock median and minimum over R repeats of N
calls, and the median of the calling thread's CPU time (``time.thread_time``), the steadier
figure on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import spmla


def measure(fn, calls, repeats, sync=None):
    """Per call: wall time (median / min over the repeats) and the calling thread's CPU time
    (median), which a machine shared with other jobs inflates less than the wall clock."""
    fn()
    per, cpu = [], []
    for _ in range(repeats):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per.append((time.perf_counter() - t0) / calls * 1e6)
        cpu.append((time.thread_time() - c0) / calls * 1e6)
        if sync is not None:  # GPU: the queued work finishes outside the timed loop
            sync()
    return {"median_us": statistics.median(per), "min_us": min(per),
            "cpu_us": statistics.median(cpu)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--device", default="cpu",
                    help="torch device of the torch rows: cpu (default) or cuda (spmla's cuda "
                         "backend; host time of the calls, the kernels run behind them)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    T, H, K, pages, bs = 1, 1, 1, 4, 64
    rows = {}

    def bits_bf16(shape):
        x = rng.standard_normal(shape, dtype=np.float32).view(np.uint32)
        return ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)

    # numpy arrays (bf16 as uint16 bit patterns tagged through dtype=, as without ml_dtypes)
    data = np.zeros((pages, spmla.page_bytes("v32_fp8", bs)), np.uint8)
    cache = spmla.KVCache(data, "v32_fp8", block_size=bs)
    spmla.kv_cache_store(spmla.typed(bits_bf16((pages * bs, 576)), "bf16"),
                         np.arange(pages * bs, dtype=np.int32), cache)
    q = bits_bf16((T, H, 576))
    idx = rng.integers(0, pages * bs, (T, K)).astype(np.int32)
    lens = np.full(T, K, np.int32)
    plan = spmla.SparseAttentionPlan(q, cache, idx, lengths=lens, dtype="bf16")
    out = np.empty((T, H, 512), np.uint16)
    lse = np.empty((T, H), np.float32)
    c_ns, c_cpu = [], []
    for _ in range(args.repeats):
        c0 = time.thread_time()
        c_ns.append(plan._runner.time_c(q, data, idx, None, None, None, out, lse, None,
                                        args.calls))
        c_cpu.append((time.thread_time() - c0) / args.calls * 1e6)  # includes one Python call
    rows["c_abi"] = {"median_us": statistics.median(c_ns) / 1e3, "min_us": min(c_ns) / 1e3,
                     "cpu_us": statistics.median(c_cpu)}
    rows["numpy plan.run(out=, lse=)"] = measure(
        lambda: plan.run(q, cache, idx, out=out, lse=lse), args.calls, args.repeats)
    rows["numpy plan.run()"] = measure(lambda: plan.run(q, cache, idx), args.calls, args.repeats)
    rows["numpy plan.run (checked path)"] = measure(
        lambda: plan._run_checked(q, cache, idx, None, None, None, out, lse, None, None),
        args.calls, args.repeats)

    try:
        import torch
    except ImportError:
        torch = None
    if torch is None and args.device != "cpu":
        raise SystemExit("--device needs torch")
    if torch is not None:
        dev = torch.device(args.device)
        sync = torch.cuda.synchronize if dev.type == "cuda" else None
        m = (lambda fn: measure(fn, args.calls, args.repeats, sync))
        tq = torch.from_numpy(q.view(np.int16)).view(torch.bfloat16).to(dev)
        tdata = torch.from_numpy(data).to(dev)
        tcache = spmla.KVCache(tdata, "v32_fp8", block_size=bs)
        tidx = torch.from_numpy(idx).to(dev)
        tlens = torch.from_numpy(lens).to(dev)
        tplan = spmla.SparseAttentionPlan(tq, tcache, tidx, lengths=tlens)
        tout = torch.empty((T, H, 512), dtype=torch.bfloat16, device=dev)
        tlse = torch.empty((T, H), device=dev)
        rows["torch plan.run(out=, lse=)"] = m(
            lambda: tplan.run(tq, tcache, tidx, out=tout, lse=tlse))
        rows["torch plan.run()"] = m(lambda: tplan.run(tq, tcache, tidx))
        try:
            import spmla.flash_mla as fm
        except ImportError:
            fm = None
        indf = tidx.view(1, T, K)
        if fm is not None:
            kc = tdata.view(pages, bs, 1, 656)
            qf = tq.view(1, T, H, 576)
            meta, _ = fm.get_mla_metadata()
            fm.flash_mla_with_kvcache(qf, kc, None, None, 512, meta, is_fp8_kvcache=True,
                                      indices=indf)
            rows["torch flash_mla_with_kvcache (metadata reused)"] = m(
                lambda: fm.flash_mla_with_kvcache(qf, kc, None, None, 512, meta,
                                                  is_fp8_kvcache=True, indices=indf))
        try:
            import spmla.torch as spmla_torch
        except ImportError:
            spmla_torch = None
        if spmla_torch is not None:
            tl = tlens
            n = spmla_torch.sparse_attention_workspace_size(tq, tdata, tidx, "v32_fp8", bs,
                                                            lengths=tl)
            ws = torch.empty(max(n, 1), dtype=torch.uint8, device=dev)
            torch.ops.spmla.sparse_attention_plan(tq, tdata, tidx, "v32_fp8", bs, ws, lengths=tl)
            rows["torch torch.ops.spmla.sparse_attention_run"] = m(
                lambda: torch.ops.spmla.sparse_attention_run(tq, tdata, tidx, "v32_fp8", bs, ws,
                                                             tout, tlse, lengths=tl))
        if fm is not None:
            # DeepSeek-V4: padded 584-byte blocks (FlashMLA's [nb, bs, 1, 584] view, widened per
            # call), an extra cache, an attention sink
            pad = spmla.page_bytes("v4_fp8", bs)
            v4 = torch.zeros((pages, pad), dtype=torch.uint8, device=dev)
            spmla.kv_cache_store(torch.randn(pages * bs, 512, device=dev).to(torch.bfloat16),
                                 torch.arange(pages * bs, dtype=torch.int32, device=dev),
                                 spmla.KVCache(v4, "v4_fp8", block_size=bs))
            kc4 = v4.view(torch.float8_e4m3fn)[:, :bs * 584].view(pages, bs, 1, 584)
            q4 = torch.randn(1, T, H, 512, device=dev).to(torch.bfloat16)
            sink = torch.randn(H, device=dev)
            meta4, _ = fm.get_mla_metadata()
            call4 = (lambda: fm.flash_mla_with_kvcache(
                q4, kc4, None, None, 512, meta4, is_fp8_kvcache=True, indices=indf,
                attn_sink=sink, extra_k_cache=kc4, extra_indices_in_kvcache=indf))
            call4()
            rows["torch flash_mla_with_kvcache V4 + extra cache + sink"] = m(call4)
    info = {"spmla": spmla.__version__, "backend": plan.handle.backend,
            "shape": {"T": T, "H": H, "K": K, "layout": "v32_fp8", "pages": pages,
                      "block_size": bs},
            "torch": getattr(torch, "__version__", None), "device": args.device, "rows": rows}
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(f"spmla {info['spmla']} backend {info['backend']}, torch {info['torch']} "
          f"(torch rows on {args.device}); "
          f"T={T} H={H} K={K} v32_fp8, {args.repeats} x {args.calls} calls")
    print(f"{'call':52s} {'median us':>10s} {'min us':>8s} {'cpu us':>8s}")
    for name, r in rows.items():
        print(f"{name:52s} {r['median_us']:10.2f} {r['min_us']:8.2f} {r['cpu_us']:8.2f}")


if __name__ == "__main__":
    main()
