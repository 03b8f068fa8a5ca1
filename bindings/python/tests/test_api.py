"""The package surface: versions, info, handles, exceptions with the C message, array import
(DLPack and buffer protocol), dtype spellings, devices, streams, threads, and garbage input that
must raise instead of crashing."""

import array
import sys
import threading

import ml_dtypes
import numpy as np
import pytest

import reference as R
import spmla
from spmla import _runtime, _spmla
from util import make_cache, rand_bf16


# ---- versions, info, handles ------------------------------------------------------------------

def test_version_and_info():
    assert spmla.__version__ == _spmla.version_string() == _spmla.HEADER_VERSION
    assert spmla.__version__.count(".") == 2
    info = spmla.info()
    assert info["version"] == spmla.__version__ and info["abi_version"].startswith("1.")
    cpu = [b for b in info["backends"] if b["name"] == "cpu"][0]
    assert cpu["available"] and cpu["device_count"] == 1 and cpu["devices"][0]["arch"] == "cpu"
    for b in info["backends"]:
        assert b["available"] or b["reason"], "an unavailable backend must say why"


def test_package_metadata_version():
    import importlib.metadata as md

    try:
        v = md.version("spmla")
    except md.PackageNotFoundError:
        pytest.skip("spmla is not installed as a distribution (development overlay)")
    assert v == spmla.__version__


def test_handles():
    with spmla.Handle("cpu") as h:
        assert h.backend == "cpu" and h.device == 0 and "cpu" in repr(h)
        x = np.arange(10, dtype=np.float32)[None]
        assert spmla.topk_per_row(x, 3, handle=h).tolist() == [[7, 8, 9]]
        h.synchronize()
    assert h.closed
    with pytest.raises(spmla.InvalidArgumentError, match="closed"):
        spmla.topk_per_row(x, 3, handle=h)
    assert spmla.Handle("auto").backend in {b["name"] for b in spmla.backends()}
    with pytest.raises(spmla.InvalidArgumentError, match="handle"):
        spmla.topk_per_row(x, 3, handle="cpu")


def test_backend_unavailable_carries_c_message():
    with pytest.raises(spmla.BackendUnavailableError) as e:
        spmla.Handle("no_such_backend")
    assert e.value.status == 3 and "no_such_backend" in e.value.message
    assert "SPMLA_STATUS_BACKEND_UNAVAILABLE" in str(e.value)


def test_error_classes():
    classes = [spmla.InvalidArgumentError, spmla.UnsupportedError, spmla.BackendUnavailableError,
               spmla.OutOfMemoryError, spmla.WorkspaceTooSmallError, spmla.MisalignedError,
               spmla.SizeOverflowError, spmla.DeviceError, spmla.AbiMismatchError,
               spmla.InternalError]
    for status, cls in enumerate(classes, start=1):
        assert issubclass(cls, spmla.Error) and cls.status == status
        assert spmla._errors.error_class(status) is cls
        assert cls.status_name == _spmla.status_string(status)
        e = cls("m")
        assert e.message == "m" and e.status == status
    assert spmla._errors.error_class(77) is spmla.Error
    e = spmla.Error("x", 77)
    assert e.status == 77 and e.status_name == "SPMLA_STATUS_UNKNOWN"
    assert issubclass(spmla.InvalidArgumentError, ValueError)
    assert issubclass(spmla.OutOfMemoryError, MemoryError)


# ---- error paths of the operations: the right class, the C message ---------------------------

@pytest.fixture
def attn(rng):
    cache, _ = make_cache(rng, "v32_fp8", 2, 16)
    return cache, rand_bf16(rng, (2, 4, 576)), np.zeros((2, 8), np.int32)


@pytest.mark.parametrize("mutate,match", [
    (lambda q, i: (q.astype(np.float32), i, {}), r"q\.dtype: expected bf16"),
    (lambda q, i: (q[:, :, :512], i, {}), r"q\.shape\[2\]: expected 576"),
    (lambda q, i: (q, i.astype(np.int64), {}), r"indices\.dtype: expected int32"),
    (lambda q, i: (q, i[:1], {}), r"indices\.shape\[0\]"),
    (lambda q, i: (q, i, {"lengths": np.zeros(3, np.int32)}), r"lengths\.shape\[0\]"),
    (lambda q, i: (q, i, {"attn_sink": np.zeros(5, np.float32)}), r"attn_sink"),
    (lambda q, i: (q, i, {"out": np.zeros((2, 4, 512), np.float32)}), r"out\.dtype"),
    (lambda q, i: (q, i, {"lse": np.zeros((2, 5), np.float32)}), r"lse\.shape"),
    (lambda q, i: (q, i, {"out": np.zeros((2, 4, 1024), ml_dtypes.bfloat16)[:, :, ::2]}),
     r"out\.strides\[2\]"),
])
def test_attention_invalid_arguments(attn, mutate, match):
    cache, q, idx = attn
    q2, idx2, kw = mutate(q, idx)
    with pytest.raises(spmla.InvalidArgumentError, match=match) as e:
        spmla.sparse_attention(q2, cache, idx2, **kw)
    assert e.value.message.startswith("spmla_sparse_attention")  # the C library's own words


def test_misaligned_cache(attn):
    _, q, idx = attn
    raw = np.zeros(2 * 10496 + 16, np.uint8)
    cache = spmla.KVCache(raw[1:1 + 2 * 10496], "v32_fp8", block_size=16)
    with pytest.raises(spmla.MisalignedError, match="16-byte"):
        spmla.sparse_attention(q, cache, idx)


def test_size_overflow():
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(4, 2**31), strides=(0, 0))
    with pytest.raises(spmla.SizeOverflowError, match=r"logits\.shape\[1\]"):
        spmla.topk_per_row(big, 4)


@pytest.mark.parametrize("call,match", [
    (lambda: spmla.topk_per_row(np.zeros((3, 10), np.float32), 0), r"indices\.shape\[1\]"),
    (lambda: spmla.topk_per_row(np.zeros((3, 10), np.float64), 2), r"float64"),
    (lambda: spmla.indices_to_slots(np.zeros((2, 3), np.int32), np.zeros(2, np.int32),
                                    np.zeros((1, 2), np.int32), 0), r"block_size"),
    (lambda: spmla.window_indices(np.zeros(2, np.int32), np.zeros(2, np.int32),
                                  np.zeros((1, 2), np.int32), 4, 8, ratio=0), r"ratio"),
    (lambda: spmla.indexer_logits(np.zeros((2, 4, 96), ml_dtypes.float8_e4m3fn),
                                  np.zeros((5, 96), ml_dtypes.float8_e4m3fn), np.ones(5, np.float32),
                                  np.ones((2, 4), np.float32), np.zeros(2, np.int32),
                                  np.ones(2, np.int32)), r"96"),
    (lambda: spmla.indexer_logits(np.zeros((2, 4, 64), ml_dtypes.float8_e4m3fn),
                                  np.zeros((5, 64), ml_dtypes.float8_e4m3fnuz), np.ones(5, np.float32),
                                  np.ones((2, 4), np.float32), np.zeros(2, np.int32),
                                  np.ones(2, np.int32)), r"k\.dtype"),
    (lambda: spmla.kv_cache_store(np.zeros((2, 512), ml_dtypes.bfloat16), np.zeros(2, np.int32),
                                  spmla.KVCache.zeros("v32_fp8", 1, 4)), r"kv\.shape\[1\]"),
    (lambda: spmla.kv_cache_store(np.zeros((2, 576), ml_dtypes.bfloat16), np.zeros(2, np.float32),
                                  spmla.KVCache.zeros("v32_fp8", 1, 4)), r"slot_mapping\.dtype"),
    (lambda: spmla.kv_cache_gather(spmla.KVCache.zeros("v4_fp8", 1, 4), np.zeros(2, np.int32),
                                   out=np.zeros((2, 576), ml_dtypes.bfloat16)), r"out\.shape\[1\]"),
    (lambda: spmla.KVCache.zeros("v32_fp8", 1, 4, fp8_flavor=None), r"fp8_flavor"),
    (lambda: spmla.KVCache.zeros("v32_fp8", 1, 0), r"block_size"),
    (lambda: spmla.KVCache.zeros("bf16", 1, 4, head_dim=100), r"head_dim"),
    (lambda: spmla.KVCache(np.zeros((2, 100), np.uint8), "v32_fp8", block_size=4).num_pages,
     r"page_stride_bytes"),
])
def test_invalid_arguments_other_ops(call, match):
    with pytest.raises(spmla.InvalidArgumentError, match=match):
        call()


def test_python_level_argument_errors():
    with pytest.raises(spmla.InvalidArgumentError, match="layout"):
        spmla.KVCache(np.zeros(10, np.uint8), "v9_fp8", block_size=1)
    with pytest.raises(spmla.InvalidArgumentError, match="fp8_flavor"):
        spmla.KVCache(np.zeros(10, np.uint8), "v32_fp8", block_size=1, fp8_flavor="e5m2")
    with pytest.raises(spmla.InvalidArgumentError, match="expected an spmla.KVCache"):
        spmla.kv_cache_gather(np.zeros(10, np.uint8), np.zeros(1, np.int32))
    with pytest.raises(spmla.InvalidArgumentError, match="dtype"):
        spmla.typed(np.zeros(3), "float128")
    with pytest.raises(spmla.InvalidArgumentError, match="width"):
        spmla.window_indices(np.zeros(2, np.int32), np.zeros(2, np.int32), np.zeros((1, 2), np.int32), 4)
    with pytest.raises(spmla.InvalidArgumentError, match="rank"):
        spmla.sparse_attention(np.zeros(5, ml_dtypes.bfloat16), spmla.KVCache.zeros("v32_fp8", 1, 4),
                               np.zeros((1, 1), np.int32))


# ---- array import ------------------------------------------------------------------------------

class BrokenExport:
    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, **kw):
        raise RuntimeError("producer exploded")


class NotACapsule(BrokenExport):
    def __dlpack__(self, **kw):
        return 42


class LyingDevice:
    """Claims CUDA but exports host memory."""

    def __init__(self, a):
        self.a = a

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None, max_version=None):
        return self.a.__dlpack__()


class BadDevice(BrokenExport):
    def __dlpack_device__(self):
        return "cpu"


class OldProducer:
    """A pre-1.0 producer: no max_version keyword, unversioned capsule."""

    def __init__(self, a):
        self.a = a

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()


@pytest.mark.parametrize("bad,match", [
    ([1, 2, 3], "DLPack"), ("text", "DLPack"), (BrokenExport(), "producer exploded"),
    (NotACapsule(), "capsule"), (LyingDevice(np.zeros((3, 4), np.float32)), "disagree"),
    (BadDevice(), "__dlpack_device__"), (np.zeros((1,) * 9, np.float32), "at most 8"),
    (np.zeros((3, 4), ">f4"), "big-endian|byte order|not supported|could not be exported"),
    (np.zeros((3, 4), np.complex64), "complex|no spmla|not supported|could not"),
])
def test_garbage_inputs_raise(bad, match):
    with pytest.raises(spmla.InvalidArgumentError, match=match):
        spmla.topk_per_row(bad, 2, handle=spmla.Handle("cpu"))


def test_none_required_argument():
    with pytest.raises(spmla.InvalidArgumentError):
        spmla.topk_per_row(None, 2)
    with pytest.raises(spmla.InvalidArgumentError, match="NULL|null|required"):
        spmla.indices_to_slots(np.zeros((2, 3), np.int32), None, np.zeros((1, 2), np.int32), 4)


def test_old_dlpack_producer_and_buffer_protocol():
    x = np.array([[3.0, 1.0, 2.0, 5.0]], np.float32)
    assert spmla.topk_per_row(OldProducer(x), 2).tolist() == [[0, 3]]
    # Buffer protocol: array.array, memoryview, bytearray.
    pos = array.array("i", [0, 5, -1, 9])
    req = memoryview(array.array("i", [0]))
    table = np.array([[3, 1, 2]], np.int32)
    slots, lengths = spmla.indices_to_slots(memoryview(pos).cast("B").cast("i", (1, 4)), req, table, 4)
    assert slots.tolist() == [[12, 5, -1, 9]] and lengths.tolist() == [3]
    cache_bytes = bytearray(spmla.page_bytes("v32_fp8", 4) * 2)
    cache = spmla.KVCache(cache_bytes, "v32_fp8", block_size=4)
    kv = rand_bf16(np.random.default_rng(0), (3, 576))
    spmla.kv_cache_store(kv, np.array([0, 5, 7], np.int32), cache)
    back = spmla.kv_cache_gather(cache, np.array([5], np.int32))
    ref = R.RefCache(np.frombuffer(bytes(cache_bytes), np.uint8).reshape(2, -1), "v32_fp8", 4, 576)
    assert np.array_equal(back.view(np.uint16), R.gather(ref, np.array([5])))


def test_read_only_arrays():
    x = np.zeros((2, 4), np.float32)
    out = np.zeros((2, 2), np.int32)
    out.flags.writeable = False
    with pytest.raises(spmla.InvalidArgumentError, match="read-only"):
        spmla.topk_per_row(x, out=out)
    x.flags.writeable = False  # read-only inputs are fine
    assert spmla.topk_per_row(x, 2).shape == (2, 2)
    ro = spmla.KVCache.zeros("v32_fp8", 1, 4)
    ro.data.flags.writeable = False
    with pytest.raises(spmla.InvalidArgumentError, match="read-only"):
        spmla.kv_cache_store(np.zeros((1, 576), ml_dtypes.bfloat16), np.zeros(1, np.int32), ro)
    spmla.kv_cache_gather(ro, np.zeros(1, np.int32))  # reading is fine
    with pytest.raises(spmla.InvalidArgumentError, match="read-only"):
        spmla.kv_cache_store(np.zeros((1, 576), ml_dtypes.bfloat16), np.zeros(1, np.int32),
                             spmla.KVCache(bytes(spmla.page_bytes("v32_fp8", 4)), "v32_fp8", block_size=4))


def test_dtype_reinterpretation_rules():
    with pytest.raises(spmla.InvalidArgumentError, match="uint16.*dtype='bf16'"):
        spmla.kv_cache_gather(spmla.KVCache.zeros("v32_fp8", 1, 4), np.zeros(1, np.int32),
                              out=np.zeros((1, 576), np.uint16))
    with pytest.raises(spmla.InvalidArgumentError, match="cannot read elements of dtype float32 as bf16"):
        spmla.kv_cache_gather(spmla.KVCache.zeros("v32_fp8", 1, 4), np.zeros(1, np.int32),
                              out=np.zeros((1, 576), np.float32), dtype="bf16")
    out = np.zeros((1, 576), np.int16)
    assert spmla.kv_cache_gather(spmla.KVCache.zeros("v32_fp8", 1, 4), np.zeros(1, np.int32),
                                 out=out, dtype="bf16") is out
    # bool arrays are uint8 (token_valid)
    s, l = spmla.indices_to_slots(np.zeros((2, 1), np.int32), np.zeros(2, np.int32),
                                  np.zeros((1, 1), np.int32), 4, token_valid=np.array([True, False]))
    assert l.tolist() == [1, 0]


@pytest.mark.parametrize("spelling,want", [
    ("bf16", spmla.DType.BF16), (ml_dtypes.bfloat16, spmla.DType.BF16),
    (np.dtype(ml_dtypes.float8_e4m3fnuz), spmla.DType.FP8_E4M3FNUZ), ("float8_e4m3fn", spmla.DType.FP8_E4M3FN),
    (np.float32, spmla.DType.FP32), (np.dtype("int32"), spmla.DType.INT32), (9, spmla.DType.UE8M0),
    ("torch.bfloat16", spmla.DType.BF16),
])
def test_dtype_spellings(spelling, want):
    assert spmla._types.as_dtype(spelling) is want


def test_layout_and_flavor_spellings():
    assert spmla._types.as_layout("FP8_DS_MLA") is spmla.Layout.V32_FP8
    assert spmla._types.as_layout(spmla.Layout.V4_FP8) is spmla.Layout.V4_FP8
    assert spmla._types.as_flavor(ml_dtypes.float8_e4m3fnuz) is spmla.FP8Flavor.E4M3FNUZ
    assert spmla._types.as_flavor(None) is spmla.FP8Flavor.NONE


def test_page_bytes_match_reference():
    for layout, dim in (("bf16", 576), ("bf16", 512), ("fp8_per_tensor", 576), ("v32_fp8", 0),
                        ("v4_fp8", 0), ("indexer_fp8", 128), ("indexer_fp8", 64)):
        for bs in (1, 2, 16, 53, 64, 256):
            kw = {"fp8_flavor": None} if layout == "bf16" else {}
            assert spmla.page_bytes(layout, bs, head_dim=dim, **kw) == R.packed_page_bytes(
                layout, bs, R.layout_dim(layout, dim))


def test_kvcache_geometry_inference():
    pb = spmla.page_bytes("v4_fp8", 64)
    assert pb == 37440
    c = spmla.KVCache(np.zeros((6, pb), np.uint8), "v4_fp8", block_size=64)
    assert (c.num_pages, c.page_stride_bytes, c.dim, c.num_slots) == (6, pb, 512, 384)
    flat = spmla.KVCache(np.zeros(6 * pb + 100, np.uint8), "v4_fp8", block_size=64)
    assert flat.num_pages == 6
    bf = spmla.KVCache(np.zeros((3, 16, 576), ml_dtypes.bfloat16), "bf16", block_size=16, head_dim=576)
    assert bf.num_pages == 3 and bf.page_stride_bytes == 16 * 576 * 2
    with pytest.raises(spmla.InvalidArgumentError, match="contiguous"):
        spmla.KVCache(np.zeros((3, 16, 1200), np.uint8)[:, :, :656], "v32_fp8", block_size=16).num_pages
    with pytest.raises(spmla.InvalidArgumentError, match="do not fit"):
        spmla.KVCache(np.zeros((2, pb), np.uint8), "v4_fp8", block_size=64, num_pages=3).num_pages
    assert "v4_fp8" in repr(c)


# ---- devices, streams, threads -----------------------------------------------------------------

class FakeView:
    def __init__(self, device):
        self.device = device


def test_device_checks():
    h = spmla.Handle("cpu")
    _runtime.check_device(FakeView((1, 0)), h, "x")
    _runtime.check_device(FakeView((3, 0)), h, "x")  # pinned host memory
    with pytest.raises(spmla.InvalidArgumentError, match=r"argument 'x': tensor on cuda:1 but the handle runs on cpu:0"):
        _runtime.check_device(FakeView((2, 1)), h, "x")
    with pytest.raises(spmla.InvalidArgumentError, match="no spmla backend"):
        _runtime.default_handle((15, 0))


def test_streams_validated():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(spmla.InvalidArgumentError, match="stream"):
        _runtime.stream_pointer(object())
    with pytest.raises(spmla.InvalidArgumentError, match="stream"):
        _runtime.stream_pointer(True)

    class S:
        def __cuda_stream__(self):
            return (0, 1234)

    assert _runtime.stream_pointer(S()) == 1234
    assert _runtime.resolve_stream(S(), (2, 0), []) == (1234, 1234)
    assert _runtime.resolve_stream(0, (2, 0), []) == (1, 0)  # DLPack's legacy default on CUDA
    assert _runtime.resolve_stream(7, (1, 0), []) == (None, 0)  # host memory takes no stream
    assert spmla.topk_per_row(x, 2, stream=0).shape == (2, 2)


def test_threads_share_and_own_handles(rng):
    x = rng.standard_normal((64, 300)).astype(np.float32)
    want = R.topk_per_row(x, 20)
    shared = spmla.Handle("cpu")
    errors = []

    def work(handle):
        try:
            for _ in range(20):
                assert np.array_equal(spmla.topk_per_row(x, 20, handle=handle), want)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work, args=(h,)) for h in (shared, shared, None, None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_workspace_object(rng):
    ws = spmla.Workspace(1000)
    assert ws.nbytes == 0 and "unallocated" in repr(ws)
    x = rng.standard_normal((3, 50)).astype(np.float32)
    spmla.topk_per_row(x, 4, workspace=ws)
    assert ws.nbytes >= 1000 and ws.buffer.ctypes.data % 256 == 0
    with pytest.raises(spmla.InvalidArgumentError, match="negative"):
        spmla.Workspace(-1)


def test_zero_tokens(rng):
    cache, _ = make_cache(rng, "v32_fp8", 1, 4)
    out, lse = spmla.sparse_attention(np.zeros((0, 4, 576), ml_dtypes.bfloat16), cache,
                                      np.zeros((0, 3), np.int32))
    assert out.shape == (0, 4, 512) and lse.shape == (0, 4)
    s, l = spmla.indices_to_slots(np.zeros((0, 3), np.int32), np.zeros(0, np.int32),
                                  np.zeros((1, 1), np.int32), 4)
    assert s.shape == (0, 3) and l.shape == (0,)
