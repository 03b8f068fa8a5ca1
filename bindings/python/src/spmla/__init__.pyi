# Type stubs of the spmla package. Shapes: T tokens, H heads, K / K2 index-list widths,
# D_qk 576 (V3.2) or 512 (V4), Hi / Di indexer heads / width, R rows, C columns.
from __future__ import annotations

import enum
from typing import Any, Dict, List, Optional, Tuple, Union

__version__: str

ArrayLike = Any  # any DLPack (__dlpack__) or buffer-protocol array, or spmla.Typed
StreamLike = Union[int, Any, None]  # int handle, torch.cuda.Stream, cupy Stream, __cuda_stream__

class Error(RuntimeError):
    status: int
    status_name: str
    message: str
    def __init__(self, message: str, status: Optional[int] = ...) -> None: ...

class InvalidArgumentError(Error, ValueError): ...
class UnsupportedError(Error): ...
class BackendUnavailableError(Error): ...
class OutOfMemoryError(Error, MemoryError): ...
class WorkspaceTooSmallError(Error, ValueError): ...
class MisalignedError(Error, ValueError): ...
class SizeOverflowError(Error, OverflowError): ...
class DeviceError(Error): ...
class AbiMismatchError(Error): ...
class InternalError(Error): ...
class HandleBusyError(Error): ...

class DType(enum.IntEnum):
    BF16 = 1
    FP16 = 2
    FP32 = 3
    INT32 = 4
    INT64 = 5
    UINT8 = 6
    FP8_E4M3FN = 7
    FP8_E4M3FNUZ = 8
    UE8M0 = 9
    @property
    def itemsize(self) -> int: ...

class Layout(enum.IntEnum):
    BF16 = 1
    FP8_PER_TENSOR = 2
    V32_FP8 = 3
    V4_FP8 = 4
    INDEXER_FP8 = 5
    V41_FP8 = 6
    V41_FP4 = 7

class Arrangement(enum.IntEnum):
    DEFAULT = 0
    PER_TOKEN = 1
    PAGE_BLOCKED = 2

class FP8Flavor(enum.IntEnum):
    NONE = 0
    E4M3FN = 1
    E4M3FNUZ = 2

class Option(enum.IntEnum):
    BATCH_INVARIANT = 1

class Handle:
    def __init__(self, backend: str = ..., device: int = ..., *,
                 batch_invariant: Optional[bool] = ...) -> None: ...
    def set_option(self, option: Union[Option, int], value: int) -> None: ...
    def get_option(self, option: Union[Option, int]) -> int: ...
    @property
    def batch_invariant(self) -> bool: ...
    @batch_invariant.setter
    def batch_invariant(self, on: bool) -> None: ...
    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def synchronize(self, stream: StreamLike = ...) -> None: ...
    def device_info(self) -> Dict[str, Any]: ...
    def __enter__(self) -> Handle: ...
    def __exit__(self, *exc: Any) -> None: ...

class Typed:
    array: Any
    dtype: DType
    def __init__(self, array: Any, dtype: Any) -> None: ...

def typed(array: Any, dtype: Any) -> Typed: ...

class Workspace:
    def __init__(self, nbytes: int = ..., *, buffer: Any = ...) -> None: ...
    @property
    def buffer(self) -> Any: ...
    @property
    def nbytes(self) -> int: ...

class KVCache:
    data: Any
    layout: Layout
    fp8_flavor: FP8Flavor
    block_size: int
    head_dim: int
    scale: float
    arrangement: Arrangement
    def __init__(self, data: ArrayLike, layout: Union[str, Layout], *, block_size: int,
                 fp8_flavor: Union[str, FP8Flavor, None] = ..., head_dim: int = ...,
                 num_pages: Optional[int] = ..., page_stride_bytes: Optional[int] = ...,
                 scale: float = ..., arrangement: Union[str, Arrangement, None] = ...) -> None: ...
    @classmethod
    def zeros(cls, layout: Union[str, Layout], num_pages: int, block_size: int, *,
              fp8_flavor: Union[str, FP8Flavor, None] = ..., head_dim: int = ...,
              scale: float = ..., like: Any = ...,
              arrangement: Union[str, Arrangement, None] = ...) -> KVCache: ...
    @property
    def dim(self) -> int: ...
    @property
    def num_pages(self) -> int: ...
    @property
    def page_stride_bytes(self) -> int: ...
    @property
    def page_bytes(self) -> int: ...
    @property
    def num_slots(self) -> int: ...

def page_bytes(layout: Union[str, Layout], block_size: int, *, head_dim: int = ...,
               fp8_flavor: Union[str, FP8Flavor, None] = ...,
               arrangement: Union[str, Arrangement, None] = ...) -> int: ...

def info() -> Dict[str, Any]: ...
def backends() -> List[Dict[str, Any]]: ...

class SparseAttentionPlan:
    handle: Handle
    workspace: Workspace
    workspace_bytes: int
    scale: float
    return_max_logits: bool
    def __init__(self, q: ArrayLike, kv_cache: KVCache, indices: ArrayLike, *,
                 lengths: Optional[ArrayLike] = ..., extra_kv_cache: Optional[KVCache] = ...,
                 extra_indices: Optional[ArrayLike] = ..., extra_lengths: Optional[ArrayLike] = ...,
                 attn_sink: Optional[ArrayLike] = ..., scale: Optional[float] = ...,
                 return_max_logits: bool = ..., workspace: Union[Workspace, ArrayLike, None] = ...,
                 dtype: Any = ..., handle: Optional[Handle] = ...,
                 stream: StreamLike = ...) -> None: ...
    def replan(self, *, stream: StreamLike = ...) -> None: ...
    def run(self, q: ArrayLike, kv_cache: KVCache, indices: ArrayLike, *,
            extra_kv_cache: Optional[KVCache] = ..., extra_indices: Optional[ArrayLike] = ...,
            attn_sink: Optional[ArrayLike] = ..., out: Optional[ArrayLike] = ...,
            lse: Optional[ArrayLike] = ..., max_logits: Optional[ArrayLike] = ...,
            stream: StreamLike = ...) -> Tuple[Any, ...]: ...

def sparse_attention(q: ArrayLike, kv_cache: KVCache, indices: ArrayLike, *,
                     lengths: Optional[ArrayLike] = ..., extra_kv_cache: Optional[KVCache] = ...,
                     extra_indices: Optional[ArrayLike] = ...,
                     extra_lengths: Optional[ArrayLike] = ..., attn_sink: Optional[ArrayLike] = ...,
                     scale: Optional[float] = ..., out: Optional[ArrayLike] = ...,
                     lse: Optional[ArrayLike] = ..., max_logits: Optional[ArrayLike] = ...,
                     return_max_logits: bool = ...,
                     workspace: Union[Workspace, ArrayLike, None] = ..., dtype: Any = ...,
                     handle: Optional[Handle] = ..., stream: StreamLike = ...) -> Tuple[Any, ...]:
    """q [T, H, D_qk] bf16, indices [T, K] int32 -> (out [T, H, 512] bf16, lse [T, H] fp32
    [, max_logits [T, H] fp32])."""

def indices_to_slots(positions: ArrayLike, token_to_req: ArrayLike, block_table: ArrayLike,
                     block_size: int, *, token_valid: Optional[ArrayLike] = ...,
                     out: Optional[ArrayLike] = ..., lengths: Optional[ArrayLike] = ...,
                     ragged: bool = ..., indptr: Optional[ArrayLike] = ...,
                     ragged_slots: Optional[ArrayLike] = ..., handle: Optional[Handle] = ...,
                     stream: StreamLike = ...) -> Tuple[Any, ...]:
    """positions [T, K], token_to_req [T], block_table [R, P] -> (slots [T, K], lengths [T]
    [, indptr [T+1], ragged_slots [T*K]])."""

def window_indices(positions: ArrayLike, token_to_req: ArrayLike, block_table: ArrayLike,
                   block_size: int, width: Optional[int] = ..., *, ratio: int = ...,
                   out: Optional[ArrayLike] = ..., lengths: Optional[ArrayLike] = ...,
                   handle: Optional[Handle] = ..., stream: StreamLike = ...) -> Tuple[Any, Any]:
    """positions [T] -> (slots [T, W], lengths [T])."""

def indexer_logits(q: ArrayLike, k: ArrayLike, k_scale: ArrayLike, weights: ArrayLike,
                   k_start: ArrayLike, k_end: ArrayLike, *, out: Optional[ArrayLike] = ...,
                   dtype: Any = ..., workspace: Union[Workspace, ArrayLike, None] = ...,
                   handle: Optional[Handle] = ..., stream: StreamLike = ...) -> Any:
    """q [T, Hi, Di] fp8, k [S, Di] fp8, k_scale [S], weights [T, Hi], k_start/k_end [T]
    -> logits [T, S] fp32."""

def indexer_logits_paged(q: ArrayLike, cache: KVCache, block_table: ArrayLike,
                         context_lens: ArrayLike, weights: ArrayLike, *,
                         num_cols: Optional[int] = ..., out: Optional[ArrayLike] = ...,
                         dtype: Any = ..., workspace: Union[Workspace, ArrayLike, None] = ...,
                         handle: Optional[Handle] = ..., stream: StreamLike = ...) -> Any:
    """q [B, N, Hi, Di] fp8, block_table [B, P], context_lens [B], weights [B*N, Hi]
    -> logits [B*N, C] fp32."""

def topk_per_row(logits: ArrayLike, k: Optional[int] = ..., *,
                 row_starts: Optional[ArrayLike] = ..., row_ends: Optional[ArrayLike] = ...,
                 context_lens: Optional[ArrayLike] = ..., next_n: int = ...,
                 out: Optional[ArrayLike] = ..., workspace: Union[Workspace, ArrayLike, None] = ...,
                 handle: Optional[Handle] = ..., stream: StreamLike = ...) -> Any:
    """logits [R, C] fp32 -> indices [R, k] int32."""

def kv_cache_store(kv: ArrayLike, slot_mapping: ArrayLike, cache: KVCache, *, dtype: Any = ...,
                   handle: Optional[Handle] = ..., stream: StreamLike = ...) -> None:
    """kv [N, D] bf16, slot_mapping [N] int32/int64 -> written into cache."""

def kv_cache_gather(cache: KVCache, slots: ArrayLike, *, out: Optional[ArrayLike] = ...,
                    dtype: Any = ..., handle: Optional[Handle] = ...,
                    stream: StreamLike = ...) -> Any:
    """slots [N] int32 -> out [N, D] bf16."""
