"""spmla's operations as torch custom operators: ``torch.ops.spmla.<op>``.

``import spmla.torch`` registers them (it needs torch; ``import spmla`` alone never imports
torch). Each operator has a fake (meta) implementation, so ``torch.compile(fullgraph=True)``
traces through it, and declares what it writes (``mutates_args``), so functionalization, CUDA
graphs and ``torch.library.opcheck`` see the truth. Every operator runs on the tensors' device
(the CPU backend for CPU tensors, spmla's cuda backend for CUDA tensors) on torch's current
stream; none allocates memory on the device outside torch's allocator or synchronises with the
host.

A KV cache is passed as its page tensor plus its description: ``layout`` ("v32_fp8",
"v4_fp8", "bf16", "fp8_per_tensor", "indexer_fp8"), ``block_size``, and optionally
``fp8_flavor`` ("e4m3fn" / "e4m3fnuz"), ``head_dim`` (0: the layout's) and ``kv_scale``
(FP8_PER_TENSOR). The page tensor is ``[num_pages, ...]`` with one page per row (see
:class:`spmla.KVCache`).

Operators (shapes as in docs/SPEC.md):

* ``sparse_attention(q, kv_cache, indices, layout, block_size, ...) -> (out, lse, max_logits)``
* ``sparse_attention_plan(q, kv_cache, indices, layout, block_size, workspace, ...)``: writes
  the schedule into ``workspace`` (a uint8 tensor of at least
  :func:`sparse_attention_workspace_size` bytes), once per step.
* ``sparse_attention_run(q, kv_cache, indices, layout, block_size, workspace, out, lse,
  max_logits=None, ...)``: one layer with the planned schedule, into ``out`` / ``lse`` (and
  ``max_logits``); the lengths tensors must be the planned ones, unchanged. A run on the
  workspace the last plan wrote, with the same description and lengths tensors and no
  max_logits, goes through that plan's fast path (the extension checks the layer's tensors
  against the plan and calls the C ABI); anything else takes the general path. The process keeps
  the 16 most recent plans (and with them references to their workspaces and planned tensors).
* ``indices_to_slots(positions, token_to_req, block_table, block_size, token_valid=None)
  -> (slots, lengths)`` and ``indices_to_slots_ragged(...) -> (slots, lengths, indptr,
  ragged_slots)``
* ``window_indices(positions, token_to_req, block_table, block_size, width, ratio=1)
  -> (slots, lengths)``
* ``indexer_logits(q, k, k_scale, weights, k_start, k_end) -> logits``
* ``indexer_logits_paged(q, cache, block_size, block_table, context_lens, weights,
  num_cols=0) -> logits`` (``cache``: an INDEXER_FP8 page tensor; the FP8 flavor is q's dtype)
* ``topk_per_row(logits, k, row_starts=None, row_ends=None, context_lens=None, next_n=1)
  -> indices``
* ``kv_cache_store(kv, slot_mapping, cache, layout, block_size, ...)``: writes ``cache``
* ``kv_cache_gather(cache, slots, layout, block_size, ...) -> out``

FP8 tensors may be torch float8 tensors (the flavor comes with the dtype) or uint8 bytes (then
the flavor is the ``fp8_flavor`` argument, where there is one, else E4M3FN).
"""

import collections
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _spmla
from ._cache import KVCache
from ._errors import InvalidArgumentError
from ._ops import (
    D_V,
    SparseAttentionPlan,
    indexer_logits as _indexer_logits,
    indexer_logits_paged as _indexer_logits_paged,
    indices_to_slots as _indices_to_slots,
    kv_cache_gather as _kv_cache_gather,
    kv_cache_store as _kv_cache_store,
    sparse_attention as _sparse_attention,
    topk_per_row as _topk_per_row,
    window_indices as _window_indices,
)
from ._runtime import Call, Workspace
from .flash_mla import _current_stream
from ._types import Layout, as_layout

__all__ = ["sparse_attention_workspace_size", "OPS"]

_LIB = "spmla"
_DIMS = {Layout.V32_FP8: 576, Layout.V4_FP8: 512}


def _cache(data: Tensor, layout: str, block_size: int, fp8_flavor: str, head_dim: int,
           kv_scale: float) -> KVCache:
    lay = as_layout(layout)
    return KVCache(data, lay, block_size=block_size,
                   fp8_flavor=None if lay is Layout.BF16 else (fp8_flavor or "e4m3fn"),
                   head_dim=head_dim, scale=kv_scale)


def _cache_dim(layout: str, head_dim: int) -> int:
    lay = as_layout(layout)
    return head_dim if head_dim else _DIMS.get(lay, 576)


def _fp8_of(t: Tensor) -> Optional[str]:
    """The spmla dtype name of a float8 tensor's flavor, None for uint8 bytes."""
    if t.dtype == torch.float8_e4m3fn:
        return "fp8_e4m3fn"
    if t.dtype == getattr(torch, "float8_e4m3fnuz", None):
        return "fp8_e4m3fnuz"
    return None


# ------------------------------------------------------------------------------------------------
# 1. sparse_attention


def _extra(extra_kv_cache: Optional[Tensor], extra_layout: str, extra_block_size: int,
           extra_fp8_flavor: str, fp8_flavor: str, head_dim: int,
           extra_kv_scale: float) -> Optional[KVCache]:
    if extra_kv_cache is None:
        return None
    if not extra_layout or extra_block_size <= 0:
        raise InvalidArgumentError("spmla::sparse_attention: extra_kv_cache needs extra_layout "
                                   "and extra_block_size")
    return _cache(extra_kv_cache, extra_layout, extra_block_size, extra_fp8_flavor or fp8_flavor,
                  head_dim, extra_kv_scale)


@torch.library.custom_op("spmla::sparse_attention", mutates_args=())
def sparse_attention(q: Tensor, kv_cache: Tensor, indices: Tensor, layout: str, block_size: int,
                     lengths: Optional[Tensor] = None, extra_kv_cache: Optional[Tensor] = None,
                     extra_indices: Optional[Tensor] = None,
                     extra_lengths: Optional[Tensor] = None, extra_layout: str = "",
                     extra_block_size: int = 0, attn_sink: Optional[Tensor] = None,
                     scale: Optional[float] = None, fp8_flavor: str = "e4m3fn",
                     extra_fp8_flavor: str = "", head_dim: int = 0, kv_scale: float = 1.0,
                     extra_kv_scale: float = 1.0) -> Tuple[Tensor, Tensor, Tensor]:
    """Sparse MLA attention, plan and run in one call: ``(out [T, H, 512] bf16, lse [T, H],
    max_logits [T, H])``."""
    cache = _cache(kv_cache, layout, block_size, fp8_flavor, head_dim, kv_scale)
    extra = _extra(extra_kv_cache, extra_layout, extra_block_size, extra_fp8_flavor, fp8_flavor,
                   head_dim, extra_kv_scale)
    out, lse, ml = _sparse_attention(q, cache, indices, lengths=lengths, extra_kv_cache=extra,
                                     extra_indices=extra_indices, extra_lengths=extra_lengths,
                                     attn_sink=attn_sink, scale=scale, return_max_logits=True)
    return out, lse, ml


@sparse_attention.register_fake
def _(q, kv_cache, indices, layout, block_size, lengths=None, extra_kv_cache=None,
      extra_indices=None, extra_lengths=None, extra_layout="", extra_block_size=0,
      attn_sink=None, scale=None, fp8_flavor="e4m3fn", extra_fp8_flavor="", head_dim=0,
      kv_scale=1.0, extra_kv_scale=1.0):
    T, H = q.shape[0], q.shape[1]
    return (q.new_empty((T, H, D_V), dtype=torch.bfloat16),
            q.new_empty((T, H), dtype=torch.float32), q.new_empty((T, H), dtype=torch.float32))


# The plans sparse_attention_plan built, by workspace (its address and device): a run on the
# same workspace with the same description and lengths tensors takes the plan's fast path (one
# trip into the extension), anything else the general path. A few recent ones are kept.
_PLANS: "collections.OrderedDict" = collections.OrderedDict()
_MAX_PLANS = 16


def _plan_key(layout, block_size, lengths, extra_layout, extra_block_size, extra_lengths,
              attn_sink, scale, fp8_flavor, extra_fp8_flavor, head_dim, kv_scale,
              extra_kv_scale) -> tuple:
    return (layout, block_size, fp8_flavor, head_dim, kv_scale, extra_layout, extra_block_size,
            extra_fp8_flavor, extra_kv_scale, scale,
            None if lengths is None else (lengths.data_ptr(), lengths.shape),
            None if extra_lengths is None else (extra_lengths.data_ptr(), extra_lengths.shape),
            attn_sink is None)


def _attention_c_call(plan: bool, q, kv_cache, indices, layout, block_size, workspace, out, lse,
                      max_logits, lengths, extra_kv_cache, extra_indices, extra_lengths,
                      extra_layout, extra_block_size, attn_sink, scale, fp8_flavor,
                      extra_fp8_flavor, head_dim, kv_scale, extra_kv_scale) -> None:
    wkey = (workspace.data_ptr(), workspace.device)
    key = _plan_key(layout, block_size, lengths, extra_layout, extra_block_size, extra_lengths,
                    attn_sink, scale, fp8_flavor, extra_fp8_flavor, head_dim, kv_scale,
                    extra_kv_scale)
    if not plan and max_logits is None:
        hit = _PLANS.get(wkey)
        if hit is not None and hit[0] == key:
            p = hit[1]
            sp = 0 if p._host else _current_stream(q)
            p._runner.run(q, kv_cache, indices, extra_kv_cache, extra_indices, attn_sink, out,
                          lse, None, sp, None if p._host else (sp or 1), True)
            return
    cache = _cache(kv_cache, layout, block_size, fp8_flavor, head_dim, kv_scale)
    if plan:
        extra = _extra(extra_kv_cache, extra_layout, extra_block_size, extra_fp8_flavor,
                       fp8_flavor, head_dim, extra_kv_scale)
        p = SparseAttentionPlan(q, cache, indices, lengths=lengths, extra_kv_cache=extra,
                                extra_indices=extra_indices, extra_lengths=extra_lengths,
                                attn_sink=attn_sink, scale=scale,
                                workspace=Workspace(buffer=workspace))
        _PLANS[wkey] = (key, p)
        _PLANS.move_to_end(wkey)
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
        return
    # A run whose plan is not known here (another process of planning, max_logits, a cloned
    # workspace under torch.compile): the general path, which reads the schedule from the
    # workspace handed over.
    extra = _extra(extra_kv_cache, extra_layout, extra_block_size, extra_fp8_flavor, fp8_flavor,
                   head_dim, extra_kv_scale)
    call = Call(q, None, None, [indices, lengths, extra_indices, extra_lengths, attn_sink],
                fn="spmla::sparse_attention_run")
    views = (call.view(q, "q"), cache._view(call, "kv_cache"), call.view(indices, "indices"),
             call.view(lengths, "lengths"),
             extra._view(call, "extra_kv_cache") if extra is not None else None,
             call.view(extra_indices, "extra_indices"), call.view(extra_lengths, "extra_lengths"),
             call.view(attn_sink, "attn_sink"), 0.0 if scale is None else float(scale),
             call.view(out, "out", writable=True), call.view(lse, "lse", writable=True),
             call.view(max_logits, "max_logits", writable=True))
    ws = call.raw_view(workspace, "workspace", writable=True)
    _spmla.sparse_attention_run(call.handle._h, *views, ws, call.stream)


def sparse_attention_workspace_size(q: Tensor, kv_cache: Tensor, indices: Tensor, layout: str,
                                    block_size: int, lengths: Optional[Tensor] = None,
                                    extra_kv_cache: Optional[Tensor] = None,
                                    extra_indices: Optional[Tensor] = None,
                                    extra_lengths: Optional[Tensor] = None,
                                    extra_layout: str = "", extra_block_size: int = 0,
                                    attn_sink: Optional[Tensor] = None,
                                    scale: Optional[float] = None, fp8_flavor: str = "e4m3fn",
                                    extra_fp8_flavor: str = "", head_dim: int = 0,
                                    kv_scale: float = 1.0, extra_kv_scale: float = 1.0,
                                    return_max_logits: bool = False) -> int:
    """Bytes of workspace ``sparse_attention_plan`` / ``_run`` need for these arguments (a host
    query from shapes only: call it outside compiled regions, allocate the workspace once)."""
    cache = _cache(kv_cache, layout, block_size, fp8_flavor, head_dim, kv_scale)
    extra = _extra(extra_kv_cache, extra_layout, extra_block_size, extra_fp8_flavor, fp8_flavor,
                   head_dim, extra_kv_scale)
    call = Call(q, None, None, [indices], fn="spmla.torch.sparse_attention_workspace_size")
    T, H = q.shape[0], q.shape[1]
    out = torch.empty((T, H, D_V), dtype=torch.bfloat16, device=q.device)
    lse = torch.empty((T, H), dtype=torch.float32, device=q.device)
    ml = torch.empty((T, H), dtype=torch.float32, device=q.device) if return_max_logits else None
    return int(_spmla.sparse_attention_workspace_size(
        call.handle._h, call.view(q, "q"), cache._view(call, "kv_cache"),
        call.view(indices, "indices"), call.view(lengths, "lengths"),
        extra._view(call, "extra_kv_cache") if extra is not None else None,
        call.view(extra_indices, "extra_indices"), call.view(extra_lengths, "extra_lengths"),
        call.view(attn_sink, "attn_sink"), 0.0 if scale is None else float(scale),
        call.view(out, "out", writable=True), call.view(lse, "lse", writable=True),
        call.view(ml, "max_logits", writable=True)))


@torch.library.custom_op("spmla::sparse_attention_plan", mutates_args=("workspace",))
def sparse_attention_plan(q: Tensor, kv_cache: Tensor, indices: Tensor, layout: str,
                          block_size: int, workspace: Tensor, lengths: Optional[Tensor] = None,
                          extra_kv_cache: Optional[Tensor] = None,
                          extra_indices: Optional[Tensor] = None,
                          extra_lengths: Optional[Tensor] = None, extra_layout: str = "",
                          extra_block_size: int = 0, attn_sink: Optional[Tensor] = None,
                          scale: Optional[float] = None, fp8_flavor: str = "e4m3fn",
                          extra_fp8_flavor: str = "", head_dim: int = 0, kv_scale: float = 1.0,
                          extra_kv_scale: float = 1.0) -> None:
    """Writes the sparse-attention schedule for these shapes and lengths into ``workspace``."""
    _attention_c_call(True, q, kv_cache, indices, layout, block_size, workspace, None, None, None,
                      lengths, extra_kv_cache, extra_indices, extra_lengths, extra_layout,
                      extra_block_size, attn_sink, scale, fp8_flavor, extra_fp8_flavor, head_dim,
                      kv_scale, extra_kv_scale)


@sparse_attention_plan.register_fake
def _(q, kv_cache, indices, layout, block_size, workspace, lengths=None, extra_kv_cache=None,
      extra_indices=None, extra_lengths=None, extra_layout="", extra_block_size=0,
      attn_sink=None, scale=None, fp8_flavor="e4m3fn", extra_fp8_flavor="", head_dim=0,
      kv_scale=1.0, extra_kv_scale=1.0):
    return None


@torch.library.custom_op("spmla::sparse_attention_run",
                         mutates_args=("workspace", "out", "lse", "max_logits"))
def sparse_attention_run(q: Tensor, kv_cache: Tensor, indices: Tensor, layout: str,
                         block_size: int, workspace: Tensor, out: Tensor, lse: Tensor,
                         max_logits: Optional[Tensor] = None, lengths: Optional[Tensor] = None,
                         extra_kv_cache: Optional[Tensor] = None,
                         extra_indices: Optional[Tensor] = None,
                         extra_lengths: Optional[Tensor] = None, extra_layout: str = "",
                         extra_block_size: int = 0, attn_sink: Optional[Tensor] = None,
                         scale: Optional[float] = None, fp8_flavor: str = "e4m3fn",
                         extra_fp8_flavor: str = "", head_dim: int = 0, kv_scale: float = 1.0,
                         extra_kv_scale: float = 1.0) -> None:
    """One layer with the schedule ``sparse_attention_plan`` wrote into ``workspace``: writes
    ``out [T, H, 512]`` bf16, ``lse [T, H]`` and ``max_logits [T, H]`` (when given)."""
    _attention_c_call(False, q, kv_cache, indices, layout, block_size, workspace, out, lse,
                      max_logits, lengths, extra_kv_cache, extra_indices, extra_lengths,
                      extra_layout, extra_block_size, attn_sink, scale, fp8_flavor,
                      extra_fp8_flavor, head_dim, kv_scale, extra_kv_scale)


@sparse_attention_run.register_fake
def _(q, kv_cache, indices, layout, block_size, workspace, out, lse, max_logits=None,
      lengths=None, extra_kv_cache=None, extra_indices=None, extra_lengths=None,
      extra_layout="", extra_block_size=0, attn_sink=None, scale=None, fp8_flavor="e4m3fn",
      extra_fp8_flavor="", head_dim=0, kv_scale=1.0, extra_kv_scale=1.0):
    return None


# ------------------------------------------------------------------------------------------------
# 2. indices_to_slots   3. window_indices


@torch.library.custom_op("spmla::indices_to_slots", mutates_args=())
def indices_to_slots(positions: Tensor, token_to_req: Tensor, block_table: Tensor,
                     block_size: int, token_valid: Optional[Tensor] = None
                     ) -> Tuple[Tensor, Tensor]:
    """Request-local positions ``[T, K]`` to slot ids: ``(slots [T, K], lengths [T])``."""
    slots, lengths = _indices_to_slots(positions, token_to_req, block_table, block_size,
                                       token_valid=token_valid)
    return slots, lengths


@indices_to_slots.register_fake
def _(positions, token_to_req, block_table, block_size, token_valid=None):
    T, K = positions.shape[0], positions.shape[1]
    return (positions.new_empty((T, K), dtype=torch.int32),
            positions.new_empty((T,), dtype=torch.int32))


@torch.library.custom_op("spmla::indices_to_slots_ragged", mutates_args=())
def indices_to_slots_ragged(positions: Tensor, token_to_req: Tensor, block_table: Tensor,
                            block_size: int, token_valid: Optional[Tensor] = None
                            ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``indices_to_slots`` plus the packed form: ``(slots, lengths, indptr [T + 1],
    ragged_slots [max(T*K, 1)])``; the tail of ragged_slots beyond indptr[T] holds -1 (filled
    before the call, so that the operator is deterministic)."""
    T, K = positions.shape[0], positions.shape[1]
    tail = torch.full((max(T * K, 1),), -1, dtype=torch.int32, device=positions.device)
    return tuple(_indices_to_slots(positions, token_to_req, block_table, block_size,
                                   token_valid=token_valid, ragged_slots=tail))


@indices_to_slots_ragged.register_fake
def _(positions, token_to_req, block_table, block_size, token_valid=None):
    T, K = positions.shape[0], positions.shape[1]
    i32 = torch.int32
    return (positions.new_empty((T, K), dtype=i32), positions.new_empty((T,), dtype=i32),
            positions.new_empty((T + 1,), dtype=i32),
            positions.new_empty((max(T * K, 1),), dtype=i32))


@torch.library.custom_op("spmla::window_indices", mutates_args=())
def window_indices(positions: Tensor, token_to_req: Tensor, block_table: Tensor,
                   block_size: int, width: int, ratio: int = 1) -> Tuple[Tensor, Tensor]:
    """Sliding-window / compressed-token slot lists: ``(slots [T, width], lengths [T])``."""
    slots, lengths = _window_indices(positions, token_to_req, block_table, block_size, width,
                                     ratio=ratio)
    return slots, lengths


@window_indices.register_fake
def _(positions, token_to_req, block_table, block_size, width, ratio=1):
    T = positions.shape[0]
    return (positions.new_empty((T, width), dtype=torch.int32),
            positions.new_empty((T,), dtype=torch.int32))


# ------------------------------------------------------------------------------------------------
# 4. indexer_logits   5. topk_per_row


@torch.library.custom_op("spmla::indexer_logits", mutates_args=())
def indexer_logits(q: Tensor, k: Tensor, k_scale: Tensor, weights: Tensor, k_start: Tensor,
                   k_end: Tensor, fp8_flavor: str = "e4m3fn") -> Tensor:
    """Lightning-indexer scores, ragged form: ``logits [T, S]`` fp32 (-inf outside each row's
    range). q / k: float8 tensors, or uint8 bytes of ``fp8_flavor``."""
    return _indexer_logits(q, k, k_scale, weights, k_start, k_end,
                           dtype=_fp8_of(q) or "fp8_" + fp8_flavor)


@indexer_logits.register_fake
def _(q, k, k_scale, weights, k_start, k_end, fp8_flavor="e4m3fn"):
    return q.new_empty((q.shape[0], k.shape[0]), dtype=torch.float32)


@torch.library.custom_op("spmla::indexer_logits_paged", mutates_args=())
def indexer_logits_paged(q: Tensor, cache: Tensor, block_size: int, block_table: Tensor,
                         context_lens: Tensor, weights: Tensor, num_cols: int = 0,
                         fp8_flavor: str = "e4m3fn") -> Tensor:
    """Lightning-indexer scores, paged decode form: ``logits [B*N, C]`` fp32, C = num_cols or
    ``max_pages * block_size``. ``cache``: INDEXER_FP8 pages of head dim q.shape[-1]."""
    flavor = (_fp8_of(q) or "fp8_" + fp8_flavor)[4:]
    c = KVCache(cache, "indexer_fp8", block_size=block_size, fp8_flavor=flavor,
                head_dim=int(q.shape[-1]))
    return _indexer_logits_paged(q, c, block_table, context_lens, weights,
                                 num_cols=num_cols or None, dtype="fp8_" + flavor)


@indexer_logits_paged.register_fake
def _(q, cache, block_size, block_table, context_lens, weights, num_cols=0,
      fp8_flavor="e4m3fn"):
    C = num_cols if num_cols else block_table.shape[1] * block_size
    return q.new_empty((q.shape[0] * q.shape[1], C), dtype=torch.float32)


@torch.library.custom_op("spmla::topk_per_row", mutates_args=())
def topk_per_row(logits: Tensor, k: int, row_starts: Optional[Tensor] = None,
                 row_ends: Optional[Tensor] = None, context_lens: Optional[Tensor] = None,
                 next_n: int = 1) -> Tensor:
    """The k largest of each row's range as ascending column indices: ``[R, k]`` int32."""
    return _topk_per_row(logits, k, row_starts=row_starts, row_ends=row_ends,
                         context_lens=context_lens, next_n=next_n)


@topk_per_row.register_fake
def _(logits, k, row_starts=None, row_ends=None, context_lens=None, next_n=1):
    return logits.new_empty((logits.shape[0], k), dtype=torch.int32)


# ------------------------------------------------------------------------------------------------
# 6. kv_cache_store   7. kv_cache_gather


@torch.library.custom_op("spmla::kv_cache_store", mutates_args=("cache",))
def kv_cache_store(kv: Tensor, slot_mapping: Tensor, cache: Tensor, layout: str,
                   block_size: int, fp8_flavor: str = "e4m3fn", head_dim: int = 0,
                   kv_scale: float = 1.0) -> None:
    """Writes ``kv [N, D]`` bf16 into the slots ``slot_mapping [N]`` of ``cache`` (in place)."""
    _kv_cache_store(kv, slot_mapping,
                    _cache(cache, layout, block_size, fp8_flavor, head_dim, kv_scale))


@kv_cache_store.register_fake
def _(kv, slot_mapping, cache, layout, block_size, fp8_flavor="e4m3fn", head_dim=0,
      kv_scale=1.0):
    return None


@torch.library.custom_op("spmla::kv_cache_gather", mutates_args=())
def kv_cache_gather(cache: Tensor, slots: Tensor, layout: str, block_size: int,
                    fp8_flavor: str = "e4m3fn", head_dim: int = 0,
                    kv_scale: float = 1.0) -> Tensor:
    """Dequantised rows ``[N, D]`` bf16 of the listed slots (invalid slots: zero rows)."""
    return _kv_cache_gather(_cache(cache, layout, block_size, fp8_flavor, head_dim, kv_scale),
                            slots)


@kv_cache_gather.register_fake
def _(cache, slots, layout, block_size, fp8_flavor="e4m3fn", head_dim=0, kv_scale=1.0):
    return cache.new_empty((slots.shape[0], _cache_dim(layout, head_dim)), dtype=torch.bfloat16)


# ------------------------------------------------------------------------------------------------
# spmla.flash_mla under torch.compile


@torch.library.custom_op("spmla::flash_mla_sparse_decode", mutates_args=())
def flash_mla_sparse_decode(q: Tensor, k_cache: Tensor, indices: Tensor, scale: float,
                            is_fp8_kvcache: bool, topk_length: Optional[Tensor] = None,
                            attn_sink: Optional[Tensor] = None,
                            extra_k_cache: Optional[Tensor] = None,
                            extra_indices: Optional[Tensor] = None,
                            extra_topk_length: Optional[Tensor] = None
                            ) -> Tuple[Tensor, Tensor]:
    """FlashMLA's sparse decode with FlashMLA's tensors (``q [b, s_q, h_q, d]``, ``k_cache
    [num_blocks, block_size, 1, bytes]``, ``indices [b, s_q, topk]``, per-request lengths), planned
    and run in one call: ``(out [b, s_q, h_q, 512], lse [b, s_q, h_q])``. What
    spmla.flash_mla.flash_mla_with_kvcache becomes inside torch.compile."""
    from .flash_mla import _decode_once

    return _decode_once(q, k_cache, indices, scale, is_fp8_kvcache, topk_length, attn_sink,
                        extra_k_cache, extra_indices, extra_topk_length)


@flash_mla_sparse_decode.register_fake
def _(q, k_cache, indices, scale, is_fp8_kvcache, topk_length=None, attn_sink=None,
      extra_k_cache=None, extra_indices=None, extra_topk_length=None):
    b, s_q, h_q = q.shape[0], q.shape[1], q.shape[2]
    return (q.new_empty((b, s_q, h_q, D_V), dtype=torch.bfloat16),
            q.new_empty((b, s_q, h_q), dtype=torch.float32))


#: Every operator this module registers, by name (``torch.ops.spmla.<name>``).
OPS = {
    "sparse_attention": sparse_attention,
    "sparse_attention_plan": sparse_attention_plan,
    "sparse_attention_run": sparse_attention_run,
    "indices_to_slots": indices_to_slots,
    "indices_to_slots_ragged": indices_to_slots_ragged,
    "window_indices": window_indices,
    "indexer_logits": indexer_logits,
    "indexer_logits_paged": indexer_logits_paged,
    "topk_per_row": topk_per_row,
    "kv_cache_store": kv_cache_store,
    "kv_cache_gather": kv_cache_gather,
    "flash_mla_sparse_decode": flash_mla_sparse_decode,
}
