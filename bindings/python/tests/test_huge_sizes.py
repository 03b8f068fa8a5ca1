"""Huge sizes are spmla errors, before any output is allocated: never numpy's MemoryError /
ValueError / OverflowError, and never a crash. Inputs that claim huge shapes come from
``as_strided`` with stride 0 (buffer protocol and DLPack) and from fake DLPack capsules."""

import ctypes

import numpy as np
import pytest

import spmla

BIG = 2 ** 40
HUGE = (spmla.SizeOverflowError, spmla.OutOfMemoryError, spmla.InvalidArgumentError)


def _no_numpy_error(excinfo):
    """The error is spmla's own (its class and message), not numpy's under another name."""
    e = excinfo.value
    assert isinstance(e, spmla.Error), type(e)
    assert e.__cause__ is None or isinstance(e.__cause__, spmla.Error), repr(e.__cause__)
    assert ": expected " in e.message and "got" in e.message, e.message


def _stride0(shape, dtype):
    """An array that claims ``shape`` over one element (every stride 0)."""
    base = np.zeros(1, dtype)
    return np.lib.stride_tricks.as_strided(base, shape, (0,) * len(shape))


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class FakeDLPack:
    """A CPU producer whose (legacy, unversioned) capsule claims any shape and strides over a
    small real buffer. DLPack codes: 0 int, 1 uint, 2 float."""

    def __init__(self, shape, strides=None, code=2, bits=32):
        self.mem = np.zeros(64, np.uint8)
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.strides = None if strides is None else (ctypes.c_int64 * len(strides))(*strides)
        self.mt = _DLManagedTensor()
        t = self.mt.dl_tensor
        t.data = self.mem.ctypes.data
        t.device = _DLDevice(1, 0)
        t.ndim = len(shape)
        t.dtype = _DLDataType(code, bits, 1)
        t.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        if self.strides is not None:
            t.strides = ctypes.cast(self.strides, ctypes.POINTER(ctypes.c_int64))
        self.mt.deleter = None

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, **kw):
        return _PyCapsule_New(ctypes.addressof(self.mt), b"dltensor", None)


# ---- outputs sized from scalar arguments --------------------------------------------------------


def test_topk_per_row_huge_k():
    x = np.zeros((2, 8), np.float32)
    with pytest.raises(spmla.SizeOverflowError, match=r"spmla.topk_per_row: indices.shape\[1\]: "
                                                      r"expected 0 .. 2\^31-1, got 1099511627776") as ei:
        spmla.topk_per_row(x, BIG)
    _no_numpy_error(ei)
    with pytest.raises(spmla.InvalidArgumentError, match=r"indices.shape\[1\]") as ei:
        spmla.topk_per_row(x, -5)
    _no_numpy_error(ei)
    with pytest.raises(spmla.SizeOverflowError):
        spmla.topk_per_row(x, 2 ** 70)


def test_window_indices_huge_width():
    pos = np.zeros(2, np.int32)
    req = np.zeros(2, np.int32)
    table = np.zeros((1, 4), np.int32)
    with pytest.raises(spmla.SizeOverflowError, match=r"spmla.window_indices: slots.shape\[1\]") as ei:
        spmla.window_indices(pos, req, table, 64, BIG)
    _no_numpy_error(ei)
    with pytest.raises(spmla.InvalidArgumentError, match=r"slots.shape\[1\]"):
        spmla.window_indices(pos, req, table, 64, -1)


def test_indexer_logits_paged_huge_num_cols():
    q = np.zeros((1, 1, 1, 64), np.uint8)
    cache = spmla.KVCache.zeros("indexer_fp8", 2, 4, head_dim=64)
    table = np.zeros((1, 2), np.int32)
    with pytest.raises(spmla.SizeOverflowError, match=r"indexer_logits_paged: logits.shape\[1\]") as ei:
        spmla.indexer_logits_paged(q, cache, table, np.ones(1, np.int32),
                                   np.ones((1, 1), np.float32), num_cols=BIG, dtype="fp8_e4m3fn")
    _no_numpy_error(ei)


@pytest.mark.parametrize("pages", [BIG, 2 ** 62, -1])
def test_kvcache_zeros_huge(pages):
    with pytest.raises(HUGE) as ei:
        spmla.KVCache.zeros("v32_fp8", pages, 64)
    _no_numpy_error(ei)


# ---- outputs sized from huge input shapes (stride-0 views and fake capsules) --------------------


@pytest.mark.parametrize("source", ["as_strided", "fake_dlpack"])
def test_topk_per_row_huge_rows(source):
    if source == "as_strided":
        x = _stride0((BIG, 8), np.float32)
    else:
        x = FakeDLPack((BIG, 8), (0, 0))
    with pytest.raises(spmla.SizeOverflowError, match=r"indices.shape\[0\]: expected 0 .. 2\^31-1") as ei:
        spmla.topk_per_row(x, 2)
    _no_numpy_error(ei)


def test_kv_cache_gather_huge_slots():
    cache = spmla.KVCache.zeros("v32_fp8", 2, 4)
    with pytest.raises(spmla.SizeOverflowError, match=r"kv_cache_gather: out.shape\[0\]") as ei:
        spmla.kv_cache_gather(cache, _stride0((BIG,), np.int32))
    _no_numpy_error(ei)


def test_allocation_failures_are_spmla_errors(monkeypatch):
    """Below 2^31 per extent but beyond memory: the allocator's MemoryError / ValueError becomes
    spmla.OutOfMemoryError / SizeOverflowError (simulated: a real one would need terabytes)."""
    from spmla import _runtime

    cache = spmla.KVCache.zeros("v32_fp8", 2, 4)
    for exc, cls in ((MemoryError("Unable to allocate 2.3 TiB"), spmla.OutOfMemoryError),
                     (ValueError("array is too big"), spmla.SizeOverflowError)):
        def boom(*a, **k):
            raise exc
        monkeypatch.setattr(_runtime, "allocate", boom)
        with pytest.raises(cls, match=r"kv_cache_gather: out: expected") as ei:
            spmla.kv_cache_gather(cache, np.zeros(3, np.int32))
        _no_numpy_error(ei)
        monkeypatch.setattr(np, "zeros", boom)
        with pytest.raises(cls, match=r"KVCache.zeros: data: expected") as ei:
            spmla.KVCache.zeros("v32_fp8", 2, 4)
        monkeypatch.undo()


def test_sparse_attention_huge_tokens_and_heads():
    cache = spmla.KVCache.zeros("v32_fp8", 2, 4)
    for shape, dim in (((BIG, 16, 576), 0), ((4, BIG, 576), 1)):
        q = _stride0(shape, np.uint16)
        idx = _stride0((shape[0], 8), np.int32)
        with pytest.raises(spmla.SizeOverflowError,
                           match=rf"sparse_attention: out.shape\[{dim}\]") as ei:
            spmla.sparse_attention(q, cache, idx, dtype="bf16")
        _no_numpy_error(ei)


def test_indices_to_slots_huge():
    pos = _stride0((BIG, 4), np.int32)
    req = _stride0((BIG,), np.int32)
    table = np.zeros((1, 4), np.int32)
    with pytest.raises(spmla.SizeOverflowError, match=r"indices_to_slots: slots.shape\[0\]") as ei:
        spmla.indices_to_slots(pos, req, table, 64)
    _no_numpy_error(ei)
    # T * K >= 2^31: the ragged output cannot exist.
    pos = _stride0((2 ** 20, 2 ** 12), np.int32)
    req = _stride0((2 ** 20,), np.int32)
    with pytest.raises(spmla.SizeOverflowError, match=r"ragged_slots.shape\[0\]") as ei:
        spmla.indices_to_slots(pos, req, table, 64, ragged=True,
                               out=_stride0((2 ** 20, 2 ** 12), np.int32),
                               lengths=_stride0((2 ** 20,), np.int32))
    _no_numpy_error(ei)


def test_indexer_logits_huge():
    q = _stride0((BIG, 1, 64), np.uint8)
    k = np.zeros((4, 64), np.uint8)
    with pytest.raises(spmla.SizeOverflowError, match=r"indexer_logits: logits.shape\[0\]") as ei:
        spmla.indexer_logits(q, k, np.ones(4, np.float32), _stride0((BIG, 1), np.float32),
                             _stride0((BIG,), np.int32), _stride0((BIG,), np.int32),
                             dtype="fp8_e4m3fn")
    _no_numpy_error(ei)


# ---- the DLPack / buffer import itself ----------------------------------------------------------


@pytest.mark.parametrize("shape,strides", [
    ((2 ** 62, 2 ** 62), None),          # element count overflows 64 bits
    ((4, 4), (2 ** 62, 1)),              # byte extent overflows
    ((2 ** 40, 2 ** 40, 2 ** 40), (0, 0, 0)),
])
def test_fake_dlpack_overflowing_shape(shape, strides):
    with pytest.raises(spmla.SizeOverflowError, match=r"argument 'logits': expected .*below 2\^63") as ei:
        spmla.topk_per_row(FakeDLPack(shape, strides), 2)
    _no_numpy_error(ei)


def test_fake_dlpack_huge_extent_reaches_c_validation():
    """2^40 rows claimed by a capsule, with an out= given: no allocation at all, and the C
    validation names the extent."""
    out = np.zeros((4, 2), np.int32)
    with pytest.raises(spmla.SizeOverflowError, match=r"logits.shape\[0\]") as ei:
        spmla.topk_per_row(FakeDLPack((BIG, 8), (0, 1)), out=out)
    assert isinstance(ei.value, spmla.Error)


def test_fake_dlpack_negative_shape():
    with pytest.raises(spmla.InvalidArgumentError, match="negative extent"):
        spmla.topk_per_row(FakeDLPack((-4, 8)), 2)


def test_cache_over_huge_claimed_array():
    """A KVCache over a capsule claiming 2^62 x 2^62 bytes: an spmla error, never a crash."""
    cache = spmla.KVCache(FakeDLPack((2 ** 62, 2 ** 62), None, code=1, bits=8), "v32_fp8",
                          block_size=1)
    with pytest.raises(spmla.SizeOverflowError) as ei:
        cache.num_pages
    assert isinstance(ei.value, spmla.Error)
