"""A drop-in for FlashMLA's Python module (``import spmla.flash_mla as flash_mla``).

The sparse entry points of ``flash_mla`` (deepseek-ai/FlashMLA,
``flash_mla/flash_mla_interface.py``) with the same signatures, defaults and return conventions,
computed by spmla (CUDA tensors on spmla's cuda backend, CPU tensors on its CPU reference
backend):

* :func:`get_mla_metadata` ``(*args, **kwargs) -> (FlashMLASchedMeta, None)``: an empty
  metadata object; the first :func:`flash_mla_with_kvcache` call with it plans.
* :func:`flash_mla_with_kvcache` ``(q, k_cache, block_table, cache_seqlens, head_dim_v,
  tile_scheduler_metadata, num_splits=None, softmax_scale=None, causal=False,
  is_fp8_kvcache=False, indices=None, attn_sink=None, extra_k_cache=None,
  extra_indices_in_kvcache=None, topk_length=None, extra_topk_length=None) -> (out, lse)``:
  sparse decode. ``q [b, s_q, h_q, d]`` bf16 (any strides with a contiguous last dimension);
  ``k_cache [num_blocks, block_size, 1, bytes]`` in FlashMLA's byte layouts: 656 bytes per token
  for DeepSeek-V3.2 (d 576), 584 for DeepSeek-V4 ("MODEL1", d 512: per block, ``block_size``
  rows of 576 data bytes then ``block_size`` rows of 8 scale bytes, blocks padded to a multiple
  of 576 bytes as FlashMLA's ``tests/quant.py`` allocates them); float8_e4m3fn, uint8 or int8
  tensors. ``indices [b, s_q, topk]`` int32 slot ids (``block * block_size + offset``);
  ``topk_length`` / ``extra_topk_length`` ``[b]`` int32 (per request, for all its s_q tokens);
  ``attn_sink [h_q]`` fp32; ``extra_k_cache`` + ``extra_indices_in_kvcache`` (any block size,
  either layout of the same d). Returns ``out [b, s_q, h_q, 512]`` bf16 and ``lse [b, h_q, s_q]``
  fp32 with FlashMLA's strides (a transposed view of a ``[b, s_q, h_q]`` buffer); lse excludes the
  sink; a query with nothing to attend gets out 0 and lse +inf.
* :func:`flash_mla_sparse_fwd` ``(q, kv, indices, sm_scale, d_v=512, attn_sink=None,
  topk_length=None) -> (out, max_logits, lse)``: sparse prefill over a bf16 ``kv [s_kv, 1, d]``
  with ``indices [s_q, 1, topk]`` and ``topk_length [s_q]``.

The metadata object holds spmla's plan and its workspace: the first call of a step plans (from
the shapes and the values of ``topk_length`` / ``extra_topk_length``, as FlashMLA's scheduler
does), every later call with the same metadata (every layer) only runs, with no allocation
beyond its outputs (through torch's allocator, as FlashMLA's) and no host synchronisation, so a
decode step can be captured in a CUDA graph. As with FlashMLA, a metadata object may be reused
only while the shapes and the lengths' values stay the same; take a fresh one per step.

Where spmla differs from FlashMLA (all of it beyond what FlashMLA accepts):

* Every slot id that is negative or ``>= num_blocks * block_size`` is "no key", and nothing
  outside the cache is ever read. FlashMLA treats only -1 (and, in prefill, ids ``>= s_kv``) as
  invalid: other negative ids read out of bounds there.
* Any ``h_q`` from 1 to 128 (FlashMLA: 64 or 128), any top-k >= 1 (FlashMLA pads to its tile),
  any block size, ``topk_length`` with the V3.2 layout too, and a bf16 ``k_cache``
  (``[num_blocks, block_size, 1, d]`` bfloat16, ``is_fp8_kvcache=False``) for sparse decode.
* V4 caches: spmla's descriptor covers every block with its padding (``584 * block_size``
  rounded up to a multiple of 576). FlashMLA's kernel view ``[num_blocks, block_size, 1, 584]``
  ends ``584 * block_size`` bytes into the last block; the drop-in widens it to whole padded
  blocks when the tensor's storage holds them (it does for caches allocated as FlashMLA's tests
  and engines allocate them), and otherwise raises :class:`spmla.InvalidArgumentError` rather
  than read past the storage. A V4 cache whose blocks are not padded (block stride
  ``584 * block_size`` not a multiple of 576) is refused the same way.
* Under ``torch.compile`` each :func:`flash_mla_with_kvcache` call becomes the functional
  ``torch.ops.spmla.flash_mla_sparse_decode`` operator (registered by :mod:`spmla.torch`), which
  plans and runs in one call: the compiled graph keeps no Python state, so the metadata object
  is not used for reuse there (compile with CUDA graphs to remove the host cost instead).
* Dense attention (``indices=None``) is not part of spmla: it raises
  :class:`spmla.UnsupportedError`; so do ``causal=True`` and ``head_dim_v != 512``.
* Bad input raises :class:`spmla.Error` subclasses (:class:`spmla.InvalidArgumentError`) with
  the argument's name where FlashMLA asserts.
"""

import dataclasses
from typing import Any, Optional, Tuple

import torch

from . import _spmla
from ._cache import KVCache
from ._errors import InvalidArgumentError, UnsupportedError
from ._ops import SparseAttentionPlan
from ._ops import sparse_attention as _sparse_attention
from ._runtime import Workspace

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache",
           "flash_mla_sparse_fwd"]

_LAYOUT_OF_BYTES = {656: ("v32_fp8", 576), 584: ("v4_fp8", 512)}
_BYTE_DTYPES = (torch.uint8, torch.int8, torch.float8_e4m3fn)
_empty = torch.empty  # output allocation (tests poison it)
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # what inductor's code calls


def _current_stream(t: torch.Tensor) -> int:
    """torch's current stream on t's GPU, as the native handle."""
    if _raw_stream is not None:
        return int(_raw_stream(t.get_device()))
    return int(torch.cuda.current_stream(t.device).cuda_stream)


@dataclasses.dataclass
class FlashMLASchedMeta:
    """Scheduling state of one decode step: filled by the first :func:`flash_mla_with_kvcache`
    call (``config``, spmla's plan and workspace), reused by the later ones."""

    @dataclasses.dataclass
    class Config:
        b: int
        s_q: int
        h_q: int
        page_block_size: int
        h_k: int
        causal: bool
        is_fp8_kvcache: bool
        topk: Optional[int]
        extra_page_block_size: Optional[int]
        extra_topk: Optional[int]

    have_initialized: bool = False
    config: Optional[Config] = None
    #: spmla's plan (a :class:`spmla.SparseAttentionPlan`) and the buffers it reads.
    plan: Any = None
    workspace: Any = None
    # Plan-time state: staging buffers for q / indices whose strides do not flatten, the
    # per-token lengths, the cache geometry key and the runner.
    _state: Any = None


def get_mla_metadata(*args: Any, **kwargs: Any) -> Tuple[FlashMLASchedMeta, None]:
    """An empty :class:`FlashMLASchedMeta` (the arguments are accepted and ignored, as in
    FlashMLA); returns ``(metadata, None)``."""
    return FlashMLASchedMeta(), None


def _tokens(x: torch.Tensor, name: str, staging: Optional[torch.Tensor]) -> torch.Tensor:
    """``[b, s_q, ...]`` as ``[b*s_q, ...]`` without a copy when the strides allow it, else
    copied into ``staging`` (allocated at plan time)."""
    b, s = x.shape[0], x.shape[1]
    st = x.stride()
    if s == 1:
        return x.as_strided((b,) + tuple(x.shape[2:]), (st[0],) + st[2:])
    if b == 1 or st[0] == s * st[1]:
        return x.as_strided((b * s,) + tuple(x.shape[2:]), (st[1],) + st[2:])
    if staging is None:
        raise InvalidArgumentError(f"flash_mla: argument '{name}': strides changed since the "
                                   f"metadata was planned; use a fresh get_mla_metadata()")
    staging.view(x.shape).copy_(x)
    return staging


def _flat_ok(x: torch.Tensor) -> bool:
    b, s = x.shape[0], x.shape[1]
    return s == 1 or b == 1 or x.stride(0) == s * x.stride(1)


def _cache_bytes(k: torch.Tensor, name: str, is_fp8: bool, d_qk: int) -> Tuple[Any, str, int]:
    """(page tensor for spmla, layout, block_size) of a FlashMLA cache view."""
    if k.dim() != 4:
        raise InvalidArgumentError(f"flash_mla: argument '{name}': expected [num_blocks, "
                                   f"block_size, 1, bytes], got shape {tuple(k.shape)}")
    nb, bs, hk, width = (int(v) for v in k.shape)
    if hk != 1:
        raise InvalidArgumentError(f"flash_mla: argument '{name}': expected one KV head "
                                   f"(shape[2] == 1), got {hk}")
    if k.stride(3) != 1 or (bs > 1 and k.stride(1) != width):
        raise InvalidArgumentError(f"flash_mla: argument '{name}': a block's tokens must be "
                                   f"contiguous (strides [*, {width}, *, 1]), got {k.stride()}")
    if k.dtype == torch.bfloat16 and not is_fp8:
        if width != d_qk:
            raise InvalidArgumentError(f"flash_mla: argument '{name}': a bf16 cache has d = "
                                       f"{d_qk} values per token (q's), got {width}")
        return k, "bf16", bs
    if k.dtype not in _BYTE_DTYPES:
        raise InvalidArgumentError(f"flash_mla: argument '{name}': expected float8_e4m3fn, "
                                   f"uint8 or int8 bytes (or bfloat16 with "
                                   f"is_fp8_kvcache=False), got {k.dtype}")
    if not is_fp8:
        raise InvalidArgumentError(f"flash_mla: argument '{name}': an FP8 cache needs "
                                   f"is_fp8_kvcache=True")
    lay = _LAYOUT_OF_BYTES.get(width)
    if lay is None or lay[1] != d_qk:
        raise InvalidArgumentError(
            f"flash_mla: argument '{name}': expected 656 bytes per token (DeepSeek-V3.2, d 576) "
            f"or 584 (DeepSeek-V4, d 512) for q's d = {d_qk}, got {width}")
    layout = lay[0]
    raw = k.view(torch.uint8)
    if layout == "v32_fp8":
        return raw, layout, bs
    # V4: each block [bs rows of 576 B][bs rows of 8 B], padded to a multiple of 576 bytes.
    padded = int(_spmla.page_bytes(4, bs, 0, 1))
    stride = raw.stride(0) if nb > 1 else padded
    if stride % 576 != 0 or stride < padded:
        raise InvalidArgumentError(
            f"flash_mla: argument '{name}': DeepSeek-V4 blocks are {584 * bs} bytes padded to "
            f"{padded} (a multiple of 576), got blocks {stride} bytes apart")
    need = (raw.storage_offset() + (nb - 1) * stride + padded)
    if need > raw.untyped_storage().nbytes():
        raise InvalidArgumentError(
            f"flash_mla: argument '{name}': the last block's padding to {padded} bytes lies "
            f"outside the tensor's storage ({raw.untyped_storage().nbytes()} bytes from offset "
            f"{raw.storage_offset()}); allocate the cache with padded blocks as FlashMLA's "
            f"quantize_k_cache does")
    return raw.as_strided((nb, padded), (stride, 1)), layout, bs


def flash_mla_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: Optional[torch.Tensor],
    cache_seqlens: Optional[torch.Tensor],
    head_dim_v: int,
    tile_scheduler_metadata: FlashMLASchedMeta,
    num_splits: None = None,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: Optional[torch.Tensor] = None,
    attn_sink: Optional[torch.Tensor] = None,
    extra_k_cache: Optional[torch.Tensor] = None,
    extra_indices_in_kvcache: Optional[torch.Tensor] = None,
    topk_length: Optional[torch.Tensor] = None,
    extra_topk_length: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sparse decode attention, FlashMLA's signature (see the module's docstring):
    ``(out [b, s_q, h_q, 512] bf16, lse [b, h_q, s_q] fp32)``."""
    meta = tile_scheduler_metadata
    if not isinstance(meta, FlashMLASchedMeta):
        raise InvalidArgumentError("flash_mla: tile_scheduler_metadata must come from "
                                   "spmla.flash_mla.get_mla_metadata()")
    if num_splits is not None:
        raise InvalidArgumentError("flash_mla: num_splits must be None")
    if indices is None:
        raise UnsupportedError("flash_mla: dense decode (indices=None) is not part of spmla; "
                               "only sparse attention is")
    if causal:
        raise UnsupportedError("flash_mla: causal must be False for sparse attention")
    if head_dim_v != 512:
        raise UnsupportedError(f"flash_mla: head_dim_v must be 512, got {head_dim_v}")
    if (extra_k_cache is None) != (extra_indices_in_kvcache is None):
        raise InvalidArgumentError("flash_mla: extra_k_cache and extra_indices_in_kvcache come "
                                   "together")
    if extra_topk_length is not None and extra_k_cache is None:
        raise InvalidArgumentError("flash_mla: extra_topk_length needs extra_k_cache")
    if q.dim() != 4 or indices.dim() != 3:
        raise InvalidArgumentError(f"flash_mla: expected q [b, s_q, h_q, d] and indices "
                                   f"[b, s_q, topk], got {tuple(q.shape)} and "
                                   f"{tuple(indices.shape)}")
    if torch.compiler.is_compiling():
        # Traced by torch.compile: one functional operator per call (plan and run inside), so
        # the graph holds no Python state; the eager path below keeps the plan in `meta`.
        from .torch import flash_mla_sparse_decode

        scale = q.shape[-1] ** -0.5 if softmax_scale is None else float(softmax_scale)
        out, lse = flash_mla_sparse_decode(
            q, k_cache, indices, scale, is_fp8_kvcache, topk_length=topk_length,
            attn_sink=attn_sink, extra_k_cache=extra_k_cache,
            extra_indices=extra_indices_in_kvcache, extra_topk_length=extra_topk_length)
        return out, lse.transpose(1, 2)
    state = meta._state
    if state is not None:
        sig = (q.shape, indices.shape, k_cache.shape[1:], k_cache.dtype, causal, is_fp8_kvcache,
               extra_k_cache.shape[1:] if extra_k_cache is not None else None,
               extra_indices_in_kvcache.shape if extra_k_cache is not None else None,
               softmax_scale, topk_length is None, extra_topk_length is None, attn_sink is None)
        if sig == state["sig"]:  # the per-layer fast path: everything else was checked at plan
            return _run(meta, state, q, k_cache, indices, attn_sink, extra_k_cache,
                        extra_indices_in_kvcache, is_fp8_kvcache)
    b, s_q, h_q, d_qk = (int(v) for v in q.shape)
    got = (b, s_q, h_q, int(k_cache.shape[1]), int(k_cache.shape[2]), causal, is_fp8_kvcache,
           int(indices.shape[-1]),
           int(extra_k_cache.shape[1]) if extra_k_cache is not None else None,
           int(extra_indices_in_kvcache.shape[-1]) if extra_k_cache is not None else None)
    if not meta.have_initialized:
        meta.config = FlashMLASchedMeta.Config(*got)
        state = _plan(meta, q, k_cache, indices, attn_sink, extra_k_cache,
                      extra_indices_in_kvcache, topk_length, extra_topk_length, softmax_scale,
                      is_fp8_kvcache)
        state["sig"] = (q.shape, indices.shape, k_cache.shape[1:], k_cache.dtype, causal,
                        is_fp8_kvcache,
                        extra_k_cache.shape[1:] if extra_k_cache is not None else None,
                        extra_indices_in_kvcache.shape if extra_k_cache is not None else None,
                        softmax_scale, topk_length is None, extra_topk_length is None,
                        attn_sink is None)
    elif got != state["key"]:
        names = ("b", "s_q", "h_q", "page_block_size", "h_k", "causal", "is_fp8_kvcache",
                 "topk", "extra_page_block_size", "extra_topk")
        bad = [f"{n} {g} (planned {p})" for n, g, p in zip(names, got, state["key"]) if g != p]
        raise InvalidArgumentError(
            "flash_mla: the arguments differ from those the metadata was planned with: "
            + ", ".join(bad) + "; use a fresh get_mla_metadata() for new shapes")
    else:
        for i, (name, x) in enumerate((("topk_length", topk_length),
                                       ("extra_topk_length", extra_topk_length),
                                       ("attn_sink", attn_sink))):
            if (x is None) != state["sig"][-3 + i]:
                raise InvalidArgumentError(f"flash_mla: {name} given / absent unlike at planning "
                                           f"time; use a fresh get_mla_metadata()")
        scale = d_qk ** -0.5 if softmax_scale is None else float(softmax_scale)
        if scale != state["scale"]:
            raise InvalidArgumentError(f"flash_mla: softmax_scale {scale} differs from the "
                                       f"planned {state['scale']}")
        for k, n in ((k_cache, "k_cache"), (extra_k_cache, "extra_k_cache")):
            if k is not None:
                _cache_bytes(k, n, is_fp8_kvcache, d_qk)  # its own message
        raise InvalidArgumentError("flash_mla: the caches' geometry or dtypes differ from those "
                                   "the metadata was planned with; use a fresh get_mla_metadata()")
    return _run(meta, state, q, k_cache, indices, attn_sink, extra_k_cache,
                extra_indices_in_kvcache, is_fp8_kvcache)


def _widened(state: dict, k: torch.Tensor, name: str, is_fp8: bool) -> torch.Tensor:
    """_cache_bytes(k)'s page tensor, remembered per cache tensor for the step (layers call
    with the same per-layer caches): valid while the tensor keeps its storage pointer, block
    count and block stride, which are checked on every call."""
    memo = state["widened"]
    hit = memo.get(id(k))
    if hit is not None and hit[0] is k and hit[1] == (k.data_ptr(), k.shape[0], k.stride(0)):
        return hit[2]
    v = _cache_bytes(k, name, is_fp8, state["d_qk"])[0]
    memo[id(k)] = (k, (k.data_ptr(), k.shape[0], k.stride(0)), v)
    return v


def _run(meta, state, q, k_cache, indices, attn_sink, extra_k_cache, extra_indices, is_fp8):
    """One layer with the planned schedule: the caches go to the extension as they are (V3.2:
    FlashMLA's [nb, bs, 1, 656] view; V4: widened to whole padded blocks), q / indices as
    [b, s_q, ...] views that the extension flattens (or staging copies made at plan time)."""
    b, s_q, h_q = q.shape[0], q.shape[1], q.shape[2]
    if state["q_stage"] is not None:
        q = _tokens(q, "q", state["q_stage"])
    if state["i_stage"] is not None:
        indices = _tokens(indices, "indices", state["i_stage"])
    kv = k_cache if state["layout"] == "v32_fp8" else \
        _widened(state, k_cache, "k_cache", is_fp8)
    xkv = None
    if extra_k_cache is not None:
        xkv = extra_k_cache if state["extra_layout"] == "v32_fp8" else \
            _widened(state, extra_k_cache, "extra_k_cache", is_fp8)
        if state["x_stage"] is not None:
            extra_indices = _tokens(extra_indices, "extra_indices_in_kvcache", state["x_stage"])
    out = _empty((b, s_q, h_q, 512), dtype=torch.bfloat16, device=q.device)
    lse = _empty((b, s_q, h_q), dtype=torch.float32, device=q.device)
    plan = meta.plan
    if plan._host:
        plan._runner.run(q, kv, indices, xkv, extra_indices, attn_sink, out, lse, None, 0, None,
                         True)
    else:
        sp = _current_stream(q)
        plan._runner.run(q, kv, indices, xkv, extra_indices, attn_sink, out, lse, None, sp,
                         sp or 1, True)
    return out, lse.transpose(1, 2)


def _plan(meta: FlashMLASchedMeta, q, k_cache, indices, attn_sink, extra_k_cache, extra_indices,
          topk_length, extra_topk_length, softmax_scale, is_fp8) -> dict:
    b, s_q, h_q, d_qk = (int(v) for v in q.shape)
    T = b * s_q
    dev = q.device
    state = {"q_stage": None, "i_stage": None, "x_stage": None, "widened": {}}
    if not _flat_ok(q):
        state["q_stage"] = torch.empty((T, h_q, d_qk), dtype=q.dtype, device=dev)
    if not _flat_ok(indices):
        state["i_stage"] = torch.empty((T, indices.shape[-1]), dtype=indices.dtype, device=dev)
    if extra_indices is not None and not _flat_ok(extra_indices):
        state["x_stage"] = torch.empty((T, extra_indices.shape[-1]), dtype=extra_indices.dtype,
                                       device=dev)

    def per_token(lengths: Optional[torch.Tensor], name: str) -> Optional[torch.Tensor]:
        if lengths is None:
            return None
        if tuple(lengths.shape) != (b,):
            raise InvalidArgumentError(f"flash_mla: argument '{name}': expected shape ({b},), "
                                       f"got {tuple(lengths.shape)}")
        buf = torch.empty((T,), dtype=lengths.dtype, device=dev)
        buf.view(b, s_q).copy_(lengths.view(b, 1).expand(b, s_q))
        return buf

    lengths = per_token(topk_length, "topk_length")
    extra_lengths = per_token(extra_topk_length, "extra_topk_length")
    kv, layout, bs = _cache_bytes(k_cache, "k_cache", is_fp8, d_qk)
    cache = KVCache(kv, layout, block_size=bs,
                    fp8_flavor=None if layout == "bf16" else "e4m3fn",
                    head_dim=d_qk if layout == "bf16" else 0)
    extra = None
    state["extra_layout"] = None
    if extra_k_cache is not None:
        xkv, xlayout, xbs = _cache_bytes(extra_k_cache, "extra_k_cache", is_fp8, d_qk)
        extra = KVCache(xkv, xlayout, block_size=xbs,
                        fp8_flavor=None if xlayout == "bf16" else "e4m3fn",
                        head_dim=d_qk if xlayout == "bf16" else 0)
        state["extra_layout"] = xlayout
    scale = d_qk ** -0.5 if softmax_scale is None else float(softmax_scale)
    qt = _tokens(q, "q", state["q_stage"])
    it = _tokens(indices, "indices", state["i_stage"])
    xit = _tokens(extra_indices, "extra_indices_in_kvcache", state["x_stage"]) \
        if extra_indices is not None else None
    ws = Workspace()
    plan = SparseAttentionPlan(qt, cache, it, lengths=lengths, extra_kv_cache=extra,
                               extra_indices=xit, extra_lengths=extra_lengths,
                               attn_sink=attn_sink, scale=scale, workspace=ws)
    c = meta.config
    state.update(layout=layout, d_qk=d_qk, scale=scale, lengths=lengths,
                 extra_lengths=extra_lengths,
                 key=(c.b, c.s_q, c.h_q, c.page_block_size, c.h_k, c.causal, c.is_fp8_kvcache,
                      c.topk, c.extra_page_block_size, c.extra_topk))
    meta.plan, meta.workspace, meta._state = plan, ws, state
    meta.have_initialized = True
    return state


def _decode_once(q, k_cache, indices, scale, is_fp8, topk_length, attn_sink, extra_k_cache,
                 extra_indices, extra_topk_length):
    """One sparse decode call planned and run on the spot (the spmla::flash_mla_sparse_decode
    operator): ``(out [b, s_q, h_q, 512], lse [b, s_q, h_q])``."""
    b, s_q, h_q, d_qk = (int(v) for v in q.shape)
    T = b * s_q

    def cache_of(k, name):
        kv, layout, bs = _cache_bytes(k, name, is_fp8, d_qk)
        return KVCache(kv, layout, block_size=bs, fp8_flavor=None if layout == "bf16" else "e4m3fn",
                       head_dim=d_qk if layout == "bf16" else 0)

    def per_token(lengths):
        return None if lengths is None else lengths.repeat_interleave(s_q)

    extra = cache_of(extra_k_cache, "extra_k_cache") if extra_k_cache is not None else None
    out = torch.empty((b, s_q, h_q, 512), dtype=torch.bfloat16, device=q.device)
    lse = torch.empty((b, s_q, h_q), dtype=torch.float32, device=q.device)
    _sparse_attention(q.reshape(T, h_q, d_qk), cache_of(k_cache, "k_cache"),
                      indices.reshape(T, indices.shape[-1]), lengths=per_token(topk_length),
                      extra_kv_cache=extra,
                      extra_indices=(extra_indices.reshape(T, extra_indices.shape[-1])
                                     if extra_indices is not None else None),
                      extra_lengths=per_token(extra_topk_length), attn_sink=attn_sink,
                      scale=scale, out=out.view(T, h_q, 512), lse=lse.view(T, h_q))
    return out, lse


def flash_mla_sparse_fwd(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    sm_scale: float,
    d_v: int = 512,
    attn_sink: Optional[torch.Tensor] = None,
    topk_length: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse prefill, FlashMLA's signature: ``q [s_q, h_q, d_qk]`` bf16, ``kv [s_kv, 1, d_qk]``
    bf16, ``indices [s_q, 1, topk]`` int32 (-1 or ``>= s_kv``: no key; spmla also any other
    negative id), ``topk_length [s_q]``. Returns ``(out [s_q, h_q, 512] bf16, max_logits [s_q,
    h_q], lse [s_q, h_q])`` fp32; lse and max_logits exclude the sink; a query with nothing to
    attend gets out 0, lse +inf and max_logits -inf."""
    if d_v != 512:
        raise UnsupportedError(f"flash_mla_sparse_fwd: d_v must be 512, got {d_v}")
    if q.dim() != 3 or kv.dim() != 3 or indices.dim() != 3:
        raise InvalidArgumentError(
            f"flash_mla_sparse_fwd: expected q [s_q, h_q, d_qk], kv [s_kv, 1, d_qk] and indices "
            f"[s_q, 1, topk], got {tuple(q.shape)}, {tuple(kv.shape)}, {tuple(indices.shape)}")
    if kv.shape[1] != 1 or indices.shape[1] != 1:
        raise InvalidArgumentError(f"flash_mla_sparse_fwd: one KV head expected (kv.shape[1] == "
                                   f"indices.shape[1] == 1), got {kv.shape[1]} and "
                                   f"{indices.shape[1]}")
    d_qk = int(q.shape[-1])
    if kv.dtype != torch.bfloat16 or int(kv.shape[-1]) != d_qk:
        raise InvalidArgumentError(f"flash_mla_sparse_fwd: argument 'kv': expected bfloat16 "
                                   f"[s_kv, 1, {d_qk}], got {kv.dtype} {tuple(kv.shape)}")
    # One token per page (block_size 1): slot id = token index, page stride = kv's row stride.
    cache = KVCache(kv, "bf16", block_size=1, head_dim=d_qk)
    idx = indices.select(1, 0)
    out, lse, ml = _sparse_attention(q, cache, idx, lengths=topk_length, attn_sink=attn_sink,
                                     scale=float(sm_scale), return_max_logits=True)
    return out, ml, lse
