"""The operations of docs/SPEC.md, with keyword arguments, outputs allocated on request, and
plan objects for decode."""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _spmla
from ._cache import KVCache
from ._errors import InvalidArgumentError
from ._runtime import (_HOST_DEVICES, Call, Handle, Workspace, allocate, resolve_stream,
                       workspace_view)
from ._types import DType, as_dtype

__all__ = [
    "SparseAttentionPlan",
    "sparse_attention",
    "indices_to_slots",
    "window_indices",
    "indexer_logits",
    "indexer_logits_paged",
    "topk_per_row",
    "kv_cache_store",
    "kv_cache_gather",
]

D_V = 512  # value width of both DeepSeek models


def _need_cache(x: Any, name: str) -> KVCache:
    if not isinstance(x, KVCache):
        raise InvalidArgumentError(
            f"argument '{name}': expected an spmla.KVCache (wrap the page array with "
            f"spmla.KVCache(data, layout, block_size=...)), got {type(x).__name__}")
    return x


def _shape(t: Any) -> Tuple[int, ...]:
    return tuple(t.shape) if t is not None else ()


def _dim(t: Any, i: int, name: str) -> int:
    """Extent i of a view, or a clear error when the rank is too small to size an output (the C
    validation names the full expectation once outputs exist)."""
    s = _shape(t)
    if len(s) <= i:
        raise InvalidArgumentError(
            f"argument '{name}': rank {len(s)} given, at least {i + 1} dimensions expected "
            f"(shape {s})")
    return int(s[i])


# ------------------------------------------------------------------------------------------------
# 1. sparse_attention


class SparseAttentionPlan:
    """A sparse-attention schedule built once and run for every layer (decode).

    Planning sizes the workspace, allocates it, and lets the backend write its schedule (e.g.
    split-K over the index list) into it on the stream. The plan stays valid while the shapes
    and the ``lengths`` / ``extra_lengths`` tensors (the same arrays, with the same contents)
    stay as planned; when an engine rewrites those arrays in place for the next step, call
    :meth:`replan`. Each :meth:`run` may use another layer's ``q``, cache, indices and sink.

    Args (shapes: T tokens, H heads, K / K2 index-list widths, D_qk 576 or 512):
        q: ``[T, H, D_qk]`` bf16.
        kv_cache: :class:`KVCache`, head dim D_qk.
        indices: ``[T, K]`` int32 slot ids (negative or >= num_slots: no key).
        lengths: optional ``[T]`` int32: only list positions < lengths[t] count.
        extra_kv_cache, extra_indices ``[T, K2]``, extra_lengths ``[T]``: optional second
            source (DeepSeek-V4's sliding window), any layout with the same D_qk.
        attn_sink: optional ``[H]`` fp32.
        scale: softmax scale (default ``1/sqrt(D_qk)``).
        return_max_logits: also produce ``max_logits [T, H]``.
        workspace: a :class:`Workspace` (shared between plans that never run concurrently) or
            a caller-allocated byte array; default: a fresh Workspace.
        dtype: dtype of ``q`` / ``out`` elements when the framework cannot say bf16 (a uint16
            view): ``"bf16"``.
        handle: default: the thread's handle for q's device.
        stream: default: the current stream of q's framework (DLPack stream protocol).
    """

    def __init__(self, q: Any, kv_cache: KVCache, indices: Any, *, lengths: Any = None,
                 extra_kv_cache: Optional[KVCache] = None, extra_indices: Any = None,
                 extra_lengths: Any = None, attn_sink: Any = None,
                 scale: Optional[float] = None, return_max_logits: bool = False,
                 workspace: Union[Workspace, Any, None] = None, dtype: Any = None,
                 handle: Optional[Handle] = None, stream: Any = None) -> None:
        kv_cache = _need_cache(kv_cache, "kv_cache")
        if extra_kv_cache is not None:
            _need_cache(extra_kv_cache, "extra_kv_cache")
        call = Call(q, handle, stream, [indices, lengths, extra_indices, extra_lengths, attn_sink],
                    fn="spmla.sparse_attention")
        self.handle = call.handle
        self.device = call.device
        self._like = q
        self.scale = 0.0 if scale is None else float(scale)
        self.return_max_logits = bool(return_max_logits)
        self._dtype = dtype
        self._lengths = lengths
        self._extra_lengths = extra_lengths
        self._attn_sink = attn_sink
        args = self._views(call, q, kv_cache, indices, extra_kv_cache, extra_indices, attn_sink)
        self._signature = self._sign(args)
        # Plan-time outputs: the C plan sees complete arguments.
        T, H = _dim(args["q"], 0, "q"), _dim(args["q"], 1, "q")
        _, out = call.output(None, "out", (T, H, D_V), DType.BF16)
        _, lse = call.output(None, "lse", (T, H), DType.FP32)
        ml = call.output(None, "max_logits", (T, H), DType.FP32)[1] if self.return_max_logits else None
        self._args = args
        self._plan_outputs = (out, lse, ml)
        size = _spmla.sparse_attention_workspace_size(
            call.handle._h, *self._c_args(args), self.scale, out, lse, ml)
        self.workspace_bytes = int(size)
        self.workspace, self._ws = workspace_view(workspace, call, self.workspace_bytes)
        self._plan(call)
        self._fast_setup(kv_cache, extra_kv_cache)

    def _fast_setup(self, kv_cache: KVCache, extra_kv_cache: Optional[KVCache]) -> None:
        """The fast path of :meth:`run`: the extension's AttentionRunner holds the handle, the
        planned lengths, the workspace and the planned shapes, so a layer's call is one trip
        into C++ that converts each tensor once."""
        a = self._args
        q_override = int(as_dtype(self._dtype)) if self._dtype is not None else 0
        r = _spmla.AttentionRunner(self.handle._h, a["q"], a["kv"], a["indices"], a["lengths"],
                                   a["extra_kv"], a["extra_indices"], a["extra_lengths"],
                                   a["attn_sink"], self.scale, self.return_max_logits, self._ws,
                                   q_override)
        for extra, c in ((False, kv_cache), (True, extra_kv_cache)):
            if c is not None:
                r.set_cache_args(extra, int(c.layout), int(c.fp8_flavor), c.head_dim,
                                 c.block_size, -1 if c._num_pages is None else c._num_pages,
                                 -1 if c._page_stride is None else c._page_stride, c.scale,
                                 int(c.arrangement))
        self._runner = r
        self._caches = (kv_cache, kv_cache._geometry(), extra_kv_cache,
                        extra_kv_cache._geometry() if extra_kv_cache is not None else None)
        self._host = self.device[0] in _HOST_DEVICES
        T, H = self._signature["q"][0][:2]
        # Output allocators for run() without out= / lse=: arrays like the planned q's (its
        # framework and device), built once.
        self._new = tuple(_allocator(self._like, self.device, shape, dt)
                          for shape, dt in (((T, H, D_V), DType.BF16), ((T, H), DType.FP32)))

    def _views(self, call: Call, q: Any, kv_cache: KVCache, indices: Any,
               extra_kv_cache: Optional[KVCache], extra_indices: Any, attn_sink: Any) -> dict:
        return {
            "q": call.view(q, "q", dtype=self._dtype),
            "kv": _need_cache(kv_cache, "kv_cache")._view(call, "kv_cache"),
            "indices": call.view(indices, "indices"),
            "lengths": call.view(self._lengths, "lengths"),
            "extra_kv": (_need_cache(extra_kv_cache, "extra_kv_cache")._view(call, "extra_kv_cache")
                         if extra_kv_cache is not None else None),
            "extra_indices": call.view(extra_indices, "extra_indices"),
            "extra_lengths": call.view(self._extra_lengths, "extra_lengths"),
            "attn_sink": call.view(attn_sink, "attn_sink"),
        }

    @staticmethod
    def _c_args(a: dict) -> tuple:
        return (a["q"], a["kv"], a["indices"], a["lengths"], a["extra_kv"], a["extra_indices"],
                a["extra_lengths"], a["attn_sink"])

    @staticmethod
    def _sign(a: dict) -> dict:
        def cache_sig(c: Any) -> Any:
            return None if c is None else (c.num_pages, c.page_stride_bytes, c.page_bytes)

        return {
            "q": (_shape(a["q"]), a["q"].dtype),
            "indices": _shape(a["indices"]),
            "extra_indices": _shape(a["extra_indices"]) if a["extra_indices"] is not None else None,
            "kv_cache": cache_sig(a["kv"]),
            "extra_kv_cache": cache_sig(a["extra_kv"]),
            "attn_sink": _shape(a["attn_sink"]) if a["attn_sink"] is not None else None,
        }

    def _plan(self, call: Call) -> None:
        out, lse, ml = self._plan_outputs
        _spmla.sparse_attention_plan(call.handle._h, *self._c_args(self._args), self.scale, out,
                                     lse, ml, self._ws, call.stream)

    def replan(self, *, stream: Any = None) -> None:
        """Rebuilds the schedule after the planned ``lengths`` arrays were rewritten in place."""
        call = Call(self._like, self.handle, stream, [self._lengths, self._extra_lengths],
                    fn="spmla.SparseAttentionPlan.replan")
        self._plan(call)

    def run(self, q: Any, kv_cache: KVCache, indices: Any, *,
            extra_kv_cache: Optional[KVCache] = None, extra_indices: Any = None,
            attn_sink: Any = None, out: Any = None, lse: Any = None, max_logits: Any = None,
            stream: Any = None) -> tuple:
        """Attention for one layer with the planned schedule.

        ``q [T, H, D_qk]``, ``indices [T, K]`` and ``extra_indices [T, K2]`` must have the planned
        shapes and the caches the planned geometry; ``attn_sink [H]`` defaults to the planned
        one. Returns ``(out [T, H, 512] bf16, lse [T, H] fp32)``, plus ``max_logits [T, H]`` when
        planned with ``return_max_logits``; ``out=`` / ``lse=`` / ``max_logits=`` write into
        caller arrays instead.
        """
        k0, g0, k1, g1 = self._caches
        if kv_cache is not k0 and (not isinstance(kv_cache, KVCache) or kv_cache._geometry() != g0):
            return self._run_checked(q, kv_cache, indices, extra_kv_cache, extra_indices,
                                     attn_sink, out, lse, max_logits, stream)
        if extra_kv_cache is not k1 and (not isinstance(extra_kv_cache, KVCache)
                                         or extra_kv_cache._geometry() != g1):
            return self._run_checked(q, kv_cache, indices, extra_kv_cache, extra_indices,
                                     attn_sink, out, lse, max_logits, stream)
        if out is None:
            out = self._new[0]()
        if lse is None:
            lse = self._new[1]()
        if self.return_max_logits and max_logits is None:
            max_logits = self._new[1]()
        if self._host:
            sp, dls = 0, None
        else:
            dls, sp = resolve_stream(stream, self.device, (q,))
        # stream=None on a GPU: torch's current stream, which DLPack's handshake would leave as
        # it is, so torch tensors are read directly from their attributes.
        self._runner.run(q, kv_cache.data, indices,
                         extra_kv_cache.data if extra_kv_cache is not None else None,
                         extra_indices, attn_sink, out, lse, max_logits, sp, dls, stream is None)
        if self.return_max_logits:
            return out, lse, max_logits
        return out, lse

    def _run_checked(self, q: Any, kv_cache: Any, indices: Any, extra_kv_cache: Any,
                     extra_indices: Any, attn_sink: Any, out: Any, lse: Any, max_logits: Any,
                     stream: Any) -> tuple:
        """run() through the general path: allocates missing outputs, checks every argument in
        Python with the full messages, then converts each tensor."""
        call = Call(q, self.handle, stream, [indices, extra_indices, out],
                    fn="spmla.SparseAttentionPlan.run")
        if attn_sink is None:
            attn_sink = self._attn_sink
        args = self._views(call, q, kv_cache, indices, extra_kv_cache, extra_indices, attn_sink)
        args["lengths"] = self._args["lengths"]
        args["extra_lengths"] = self._args["extra_lengths"]
        sig = self._sign(args)
        for key, planned in self._signature.items():
            if sig[key] != planned:
                raise InvalidArgumentError(
                    f"argument '{key}': {sig[key]} differs from the plan's {planned}; build a "
                    f"new SparseAttentionPlan for these shapes")
        if max_logits is not None and not self.return_max_logits:
            raise InvalidArgumentError("argument 'max_logits': the plan was built without "
                                       "return_max_logits=True")
        T, H = _dim(args["q"], 0, "q"), _dim(args["q"], 1, "q")
        out_arr, out_v = call.output(out, "out", (T, H, D_V), DType.BF16, self._dtype)
        lse_arr, lse_v = call.output(lse, "lse", (T, H), DType.FP32)
        if self.return_max_logits:
            ml_arr, ml_v = call.output(max_logits, "max_logits", (T, H), DType.FP32)
        else:
            ml_arr, ml_v = None, None
        _spmla.sparse_attention_run(call.handle._h, *self._c_args(args), self.scale, out_v, lse_v,
                                    ml_v, self._ws, call.stream)
        if self.return_max_logits:
            return out_arr, lse_arr, ml_arr
        return out_arr, lse_arr

    def __repr__(self) -> str:
        return (f"spmla.SparseAttentionPlan(q={self._signature['q'][0]}, "
                f"indices={self._signature['indices']}, workspace_bytes={self.workspace_bytes}, "
                f"handle={self.handle!r})")


def _allocator(like: Any, device: Any, shape: Tuple[int, ...], dtype: DType) -> Any:
    """A function of no arguments returning a fresh uninitialised array as allocate() would."""
    probe, _ = allocate(like, device, shape, dtype)
    mod = type(probe).__module__.split(".")[0]
    if mod == "torch":
        import torch

        return functools.partial(torch.empty, shape, dtype=probe.dtype, device=probe.device)
    if mod == "numpy":
        return functools.partial(np.empty, shape, dtype=probe.dtype)
    return lambda: allocate(like, device, shape, dtype)[0]


def sparse_attention(q: Any, kv_cache: KVCache, indices: Any, *, lengths: Any = None,
                     extra_kv_cache: Optional[KVCache] = None, extra_indices: Any = None,
                     extra_lengths: Any = None, attn_sink: Any = None,
                     scale: Optional[float] = None, out: Any = None, lse: Any = None,
                     max_logits: Any = None, return_max_logits: bool = False,
                     workspace: Union[Workspace, Any, None] = None, dtype: Any = None,
                     handle: Optional[Handle] = None, stream: Any = None) -> tuple:
    """Sparse MLA attention (prefill or decode): plan and run in one call.

    For token t and head h, over the valid entries j of ``indices[t, :lengths[t]]`` in
    ``kv_cache`` and of ``extra_indices[t, :extra_lengths[t]]`` in ``extra_kv_cache``:
    ``logit_j = scale * <q[t,h], K_j>``, ``lse = log sum exp(logit)``,
    ``out = sum softmax_j * V_j`` times ``1 / (1 + exp(attn_sink[h] - lse))``. An empty set
    gives out 0, lse +inf, max_logits -inf.

    Args:
        q: ``[T, H, D_qk]`` bf16 (H 1..128; D_qk 576 for V3.2, 512 for V4).
        kv_cache: :class:`KVCache` with head dim D_qk.
        indices: ``[T, K]`` int32 slot ids, K >= 1; negative or >= num_slots = no key.
        lengths: optional ``[T]`` int32.
        extra_kv_cache / extra_indices ``[T, K2]`` / extra_lengths ``[T]``: optional second
            source.
        attn_sink: optional ``[H]`` fp32.
        scale: default ``1/sqrt(D_qk)``.
        out / lse / max_logits: optional outputs ``[T, H, 512]`` bf16, ``[T, H]`` fp32,
            ``[T, H]`` fp32 (passing max_logits implies return_max_logits).
        workspace: :class:`Workspace` or byte array to reuse across calls.
        dtype: ``"bf16"`` when q / out are uint16 views.
        handle, stream: see :class:`SparseAttentionPlan`.

    Returns:
        ``(out, lse)``, or ``(out, lse, max_logits)`` with ``return_max_logits``.
    """
    plan = SparseAttentionPlan(q, kv_cache, indices, lengths=lengths,
                               extra_kv_cache=extra_kv_cache, extra_indices=extra_indices,
                               extra_lengths=extra_lengths, attn_sink=attn_sink, scale=scale,
                               return_max_logits=return_max_logits or max_logits is not None,
                               workspace=workspace, dtype=dtype, handle=handle, stream=stream)
    return plan.run(q, kv_cache, indices, extra_kv_cache=extra_kv_cache,
                    extra_indices=extra_indices, attn_sink=attn_sink, out=out, lse=lse,
                    max_logits=max_logits, stream=stream)


# ------------------------------------------------------------------------------------------------
# 2. indices_to_slots   3. window_indices


def indices_to_slots(positions: Any, token_to_req: Any, block_table: Any, block_size: int, *,
                     token_valid: Any = None, out: Any = None, lengths: Any = None,
                     ragged: bool = False, indptr: Any = None, ragged_slots: Any = None,
                     handle: Optional[Handle] = None, stream: Any = None) -> tuple:
    """Request-local positions to cache slot ids through a block table.

    ``slots[t, k] = block_table[req, p // bs] * bs + p % bs`` for ``p = positions[t, k] >= 0``
    (req = token_to_req[t]); -1 for p < 0, p beyond the table, a negative table entry, and every
    entry of an invalid token. ``lengths[t]`` counts the valid entries.

    Args:
        positions: ``[T, K]`` int32 (-1 = none).
        token_to_req: ``[T]`` int32.
        block_table: ``[R, max_pages]`` int32.
        block_size: tokens per page.
        token_valid: optional ``[T]`` uint8 / bool.
        out, lengths: optional outputs ``[T, K]`` int32 and ``[T]`` int32.
        ragged: also return the packed form ``indptr [T + 1]`` and ``ragged_slots [T*K]`` (valid
            entries in order; the tail beyond indptr[T] is unspecified). Implied by passing
            ``indptr=`` / ``ragged_slots=``.

    Returns:
        ``(slots, lengths)`` or ``(slots, lengths, indptr, ragged_slots)``.
    """
    call = Call(positions, handle, stream, [token_to_req, block_table, out],
                fn="spmla.indices_to_slots")
    pos = call.view(positions, "positions")
    req = call.view(token_to_req, "token_to_req")
    table = call.view(block_table, "block_table")
    valid = call.view(token_valid, "token_valid")
    T, K = _dim(pos, 0, "positions"), _dim(pos, 1, "positions")
    slots_arr, slots_v = call.output(out, "slots", (T, K), DType.INT32)
    len_arr, len_v = call.output(lengths, "lengths", (T,), DType.INT32)
    want_ragged = ragged or indptr is not None or ragged_slots is not None
    ip_arr = ip_v = rs_arr = rs_v = None
    if want_ragged:
        ip_arr, ip_v = call.output(indptr, "indptr", (T + 1,), DType.INT32)
        rs_arr, rs_v = call.output(ragged_slots, "ragged_slots", (max(T * K, 1),), DType.INT32)
    _spmla.indices_to_slots(call.handle._h, pos, req, table, int(block_size), valid, slots_v,
                            len_v, ip_v, rs_v, call.stream)
    if want_ragged:
        return slots_arr, len_arr, ip_arr, rs_arr
    return slots_arr, len_arr


def window_indices(positions: Any, token_to_req: Any, block_table: Any, block_size: int,
                   width: Optional[int] = None, *, ratio: int = 1, out: Any = None,
                   lengths: Any = None, handle: Optional[Handle] = None,
                   stream: Any = None) -> tuple:
    """Sliding-window (ratio 1) or "all compressed tokens" (ratio 128) slot lists.

    For each token: ``hi = (pos + 1) // ratio``, ``lo = max(0, hi - width)``; ``slots[t]`` holds
    the slots of logical positions ``lo .. hi-1`` (ascending), then -1; ``lengths[t] = hi - lo``.

    Args:
        positions: ``[T]`` int32 absolute position of each query token in its request.
        token_to_req: ``[T]`` int32.
        block_table: ``[R, max_pages]`` int32.
        block_size: tokens per page.
        width: W (>= 1); may be omitted when ``out`` is given.
        ratio: compression ratio (>= 1).
        out, lengths: optional outputs ``[T, W]`` int32 and ``[T]`` int32.

    Returns:
        ``(slots [T, W], lengths [T])``.
    """
    call = Call(positions, handle, stream, [token_to_req, block_table, out],
                fn="spmla.window_indices")
    pos = call.view(positions, "positions")
    req = call.view(token_to_req, "token_to_req")
    table = call.view(block_table, "block_table")
    T = _dim(pos, 0, "positions")
    if width is None:
        if out is None:
            raise InvalidArgumentError("argument 'width': give the window width or an out= array")
        slots_arr, slots_v = out, call.view(out, "slots", writable=True)
    else:
        slots_arr, slots_v = call.output(out, "slots", (T, int(width)), DType.INT32)
    len_arr, len_v = call.output(lengths, "lengths", (T,), DType.INT32)
    _spmla.window_indices(call.handle._h, pos, req, table, int(block_size), int(ratio), slots_v,
                          len_v, call.stream)
    return slots_arr, len_arr


# ------------------------------------------------------------------------------------------------
# 4. indexer_logits


def indexer_logits(q: Any, k: Any, k_scale: Any, weights: Any, k_start: Any, k_end: Any, *,
                   out: Any = None, dtype: Any = None,
                   workspace: Union[Workspace, Any, None] = None,
                   handle: Optional[Handle] = None, stream: Any = None) -> Any:
    """Lightning-indexer scores, ragged form.

    ``logits[t, j] = sum_h weights[t, h] * relu(k_scale[j] * <q[t, h], k[j]>)`` for
    ``k_start[t] <= j < k_end[t]``, -inf elsewhere.

    Args:
        q: ``[T, Hi, Di]`` fp8 (Hi 1..64, Di 64 or 128).
        k: ``[S, Di]`` fp8, same flavor as q.
        k_scale: ``[S]`` fp32.
        weights: ``[T, Hi]`` fp32.
        k_start, k_end: ``[T]`` int32.
        out: optional ``[T, S]`` fp32 (row stride free).
        dtype: FP8 flavor of q and k when they are uint8 / int8 views (``"fp8_e4m3fn"`` or
            ``"fp8_e4m3fnuz"``); ml_dtypes / torch float8 arrays carry it themselves.

    Returns:
        ``logits [T, S]`` fp32.
    """
    call = Call(q, handle, stream, [k, k_scale, weights, k_start, k_end, out],
                fn="spmla.indexer_logits")
    qv = call.view(q, "q", dtype=dtype)
    kv = call.view(k, "k", dtype=dtype)
    ks = call.view(k_scale, "k_scale")
    w = call.view(weights, "weights")
    s0 = call.view(k_start, "k_start")
    s1 = call.view(k_end, "k_end")
    T, S = _dim(qv, 0, "q"), _dim(kv, 0, "k")
    arr, lv = call.output(out, "logits", (T, S), DType.FP32)
    h = call.handle._h
    size = _spmla.indexer_logits_workspace_size(h, qv, kv, ks, w, s0, s1, lv)
    _, wsv = workspace_view(workspace, call, int(size))
    _spmla.indexer_logits(h, qv, kv, ks, w, s0, s1, lv, wsv, call.stream)
    return arr


def indexer_logits_paged(q: Any, cache: KVCache, block_table: Any, context_lens: Any,
                         weights: Any, *, num_cols: Optional[int] = None, out: Any = None,
                         dtype: Any = None, workspace: Union[Workspace, Any, None] = None,
                         handle: Optional[Handle] = None, stream: Any = None) -> Any:
    """Lightning-indexer scores, paged (decode) form.

    Row ``r = b*N + i`` scores logical positions ``j < context_lens[b] - N + i + 1`` (and
    ``j < C``) of request b, whose keys live in an INDEXER_FP8 cache through ``block_table``;
    other columns are -inf.

    Args:
        q: ``[B, N, Hi, Di]`` fp8 (flavor of the cache).
        cache: :class:`KVCache` with layout ``"indexer_fp8"`` and head_dim Di.
        block_table: ``[B, max_pages]`` int32.
        context_lens: ``[B]`` int32.
        weights: ``[B*N, Hi]`` fp32.
        num_cols: C, the logits width (default ``max_pages * block_size``; no device data is
            read to size it).
        out: optional ``[B*N, C]`` fp32 (row stride free).
        dtype: FP8 flavor of q when it is a uint8 / int8 view.

    Returns:
        ``logits [B*N, C]`` fp32.
    """
    cache = _need_cache(cache, "cache")
    call = Call(q, handle, stream, [block_table, context_lens, weights, out],
                fn="spmla.indexer_logits_paged")
    qv = call.view(q, "q", dtype=dtype)
    cv = cache._view(call, "cache")
    table = call.view(block_table, "block_table")
    cl = call.view(context_lens, "context_lens")
    w = call.view(weights, "weights")
    B, N = _dim(qv, 0, "q"), _dim(qv, 1, "q")
    if num_cols is None:
        num_cols = _dim(table, 1, "block_table") * cache.block_size
    arr, lv = call.output(out, "logits", (B * N, int(num_cols)), DType.FP32)
    h = call.handle._h
    size = _spmla.indexer_logits_paged_workspace_size(h, qv, cv, table, cl, w, lv)
    _, wsv = workspace_view(workspace, call, int(size))
    _spmla.indexer_logits_paged(h, qv, cv, table, cl, w, lv, wsv, call.stream)
    return arr


# ------------------------------------------------------------------------------------------------
# 5. topk_per_row


def topk_per_row(logits: Any, k: Optional[int] = None, *, row_starts: Any = None,
                 row_ends: Any = None, context_lens: Any = None, next_n: int = 1,
                 out: Any = None, workspace: Union[Workspace, Any, None] = None,
                 handle: Optional[Handle] = None, stream: Any = None) -> Any:
    """The k largest values of each row's range, as ascending column indices.

    Range of row r: ``[row_starts[r], row_ends[r])`` (either may be absent: 0 / C), or with
    ``context_lens`` the paged decode rule ``[0, context_lens[r // next_n] - next_n + r % next_n
    + 1)``; always clipped to ``[0, C)``. Columns are relative to the range start; ties go to the
    smaller column, NaN ranks below every number; rows with fewer than k columns hold all of
    them, then -1. Deterministic on every backend.

    Args:
        logits: ``[R, C]`` fp32 (row stride free).
        k: columns per row (may be omitted when ``out`` is given).
        row_starts, row_ends: optional ``[R]`` int32.
        context_lens: optional ``[R // next_n]`` int32 (paged rule).
        next_n: tokens per request for the paged rule.
        out: optional ``[R, k]`` int32.

    Returns:
        ``indices [R, k]`` int32.
    """
    call = Call(logits, handle, stream, [row_starts, row_ends, context_lens, out],
                fn="spmla.topk_per_row")
    lv = call.view(logits, "logits")
    rs = call.view(row_starts, "row_starts")
    re = call.view(row_ends, "row_ends")
    cl = call.view(context_lens, "context_lens")
    if k is None:
        if out is None:
            raise InvalidArgumentError("argument 'k': give k or an out= array")
        arr, iv = out, call.view(out, "indices", writable=True)
    else:
        arr, iv = call.output(out, "indices", (_dim(lv, 0, "logits"), int(k)), DType.INT32)
    h = call.handle._h
    size = _spmla.topk_per_row_workspace_size(h, lv, rs, re, cl, int(next_n), iv)
    _, wsv = workspace_view(workspace, call, int(size))
    _spmla.topk_per_row(h, lv, rs, re, cl, int(next_n), iv, wsv, call.stream)
    return arr


# ------------------------------------------------------------------------------------------------
# 6. kv_cache_store   7. kv_cache_gather


def kv_cache_store(kv: Any, slot_mapping: Any, cache: KVCache, *, dtype: Any = None,
                   handle: Optional[Handle] = None, stream: Any = None) -> None:
    """Writes ``kv[n]`` into slot ``slot_mapping[n]`` of the cache in its layout, in place.

    FP8 layouts quantise per docs/SPEC.md (per-tile power-of-two scales for V32_FP8 / V4_FP8, the
    cache's scale for FP8_PER_TENSOR, one fp32 scale ``amax / fp8_max`` per token for
    INDEXER_FP8); RoPE values are stored as bf16. Negative or out-of-range slots are skipped.

    Args:
        kv: ``[N, D]`` bf16, NoPE then RoPE (D = the cache's head dim).
        slot_mapping: ``[N]`` int32 or int64.
        cache: :class:`KVCache` (written).
        dtype: ``"bf16"`` when kv is a uint16 view.
    """
    cache = _need_cache(cache, "cache")
    call = Call(kv, handle, stream, [slot_mapping, cache.data], fn="spmla.kv_cache_store")
    kvv = call.view(kv, "kv", dtype=dtype)
    sm = call.view(slot_mapping, "slot_mapping")
    cv = cache._view(call, "cache", writable=True)
    _spmla.kv_cache_store(call.handle._h, kvv, sm, cv, call.stream)


def kv_cache_gather(cache: KVCache, slots: Any, *, out: Any = None, dtype: Any = None,
                    handle: Optional[Handle] = None, stream: Any = None) -> Any:
    """Dequantised rows of the listed slots (invalid slots give zero rows); reads only them.

    Args:
        cache: :class:`KVCache`.
        slots: ``[N]`` int32.
        out: optional ``[N, D]`` bf16.
        dtype: ``"bf16"`` when out is a uint16 view.

    Returns:
        ``out [N, D]`` bf16 (D = the cache's head dim).
    """
    cache = _need_cache(cache, "cache")
    call = Call(cache.data, handle, stream, [slots, out], fn="spmla.kv_cache_gather")
    cv = cache._view(call, "cache")
    sv = call.view(slots, "slots")
    arr, ov = call.output(out, "out", (_dim(sv, 0, "slots"), cache.dim), DType.BF16, dtype)
    _spmla.kv_cache_gather(call.handle._h, cv, sv, ov, call.stream)
    return arr
