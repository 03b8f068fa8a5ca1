"""Plumbing shared by the operations: handles, devices, streams, zero-copy views, allocation."""

from __future__ import annotations

import operator
import threading
from typing import Any, Iterable, Optional, Sequence, Tuple

import numpy as np

from . import _spmla
from ._errors import InvalidArgumentError, OutOfMemoryError, SizeOverflowError
from ._types import DType, Option, as_dtype

__all__ = ["Handle", "Typed", "typed", "Workspace", "default_handle"]

# DLPack device types (DLDeviceType).
DL_CPU, DL_CUDA, DL_CUDA_HOST, DL_ROCM, DL_ROCM_HOST, DL_CUDA_MANAGED = 1, 2, 3, 10, 11, 13
_HOST_DEVICES = (DL_CPU, DL_CUDA_HOST, DL_ROCM_HOST)
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
                 9: "vpi", 10: "rocm", 11: "rocm_host", 12: "ext_dev", 13: "cuda_managed",
                 14: "oneapi", 15: "webgpu", 16: "hexagon", 17: "maia"}
_BACKEND_OF_DEVICE = {DL_CPU: "cpu", DL_CUDA_HOST: "cpu", DL_ROCM_HOST: "cpu",
                      DL_CUDA: "cuda", DL_CUDA_MANAGED: "cuda", DL_ROCM: "hip"}
ANY_DTYPE = -1  # TensorView override: any element type (cache pages are bytes)


def device_name(device: Tuple[int, int]) -> str:
    t, i = device
    return f"{_DEVICE_NAMES.get(t, f'device_type_{t}')}:{i}"


# ------------------------------------------------------------------------------------------------
# Handles


class Handle:
    """A context on one backend and device (``spmla_handle_t``).

    ``Handle("auto")`` picks the best available backend (cuda, then hip, then cpu). Operations
    called without ``handle=`` use a per-thread default handle that matches the device of their
    tensors, so most code never creates one. A handle is used by one thread at a time; calls
    from several threads on the same handle are serialised.

    Example::

        with spmla.Handle("cpu") as h:
            slots, lengths = spmla.indices_to_slots(pos, req, table, 64, handle=h)
    """

    def __init__(self, backend: str = "auto", device: int = 0, *,
                 batch_invariant: Optional[bool] = None) -> None:
        self._h = _spmla.Handle(str(backend) if backend is not None else "auto", int(device))
        if batch_invariant is not None:
            try:
                self.batch_invariant = batch_invariant
            except BaseException:
                self._h.close()
                raise

    def set_option(self, option: Any, value: int) -> None:
        """Sets a handle option (:class:`spmla.Option`, ``spmla_handle_set_option``) for the
        handle's later calls; plans made before keep their schedule (plan again). An unknown
        option or a value outside its range raises InvalidArgumentError; a backend that cannot
        honour it UnsupportedError."""
        self._h.set_option(operator.index(option), operator.index(value))

    def get_option(self, option: Any) -> int:
        """The current value of a handle option (its default if never set)."""
        return self._h.get_option(operator.index(option))

    @property
    def batch_invariant(self) -> bool:
        """``SPMLA_OPTION_BATCH_INVARIANT``: with True, a token's results are bit-identical
        whatever the other tokens of a call are (batch size, their lengths and index lists);
        docs/SPEC.md "Batch invariance". Default False (speed first)."""
        return self.get_option(Option.BATCH_INVARIANT) != 0

    @batch_invariant.setter
    def batch_invariant(self, on: bool) -> None:
        self.set_option(Option.BATCH_INVARIANT, 1 if on else 0)

    @property
    def backend(self) -> str:
        """Name of the backend ("cpu", "cuda", "hip", or a plugin's name)."""
        return self._h.backend

    @property
    def device(self) -> int:
        """Device ordinal on the backend."""
        return self._h.device

    @property
    def closed(self) -> bool:
        return self._h.closed

    def close(self) -> None:
        """Destroys the C handle; later calls through it raise InvalidArgumentError."""
        self._h.close()

    def synchronize(self, stream: Any = None) -> None:
        """Waits for the work queued on ``stream`` (default: the legacy default stream)."""
        ptr = 0 if stream is None else stream_pointer(stream)
        _spmla.stream_synchronize(self._h, ptr)

    def device_info(self) -> dict:
        """The device's properties (name, arch, memory, multiprocessors, warp size, FP8)."""
        return _spmla.device_info(self.backend, self.device)

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ", closed" if self.closed else ""
        return f"spmla.Handle(backend={self.backend!r}, device={self.device}{state})"


_tls = threading.local()


def default_handle(device: Tuple[int, int]) -> Handle:
    """The calling thread's handle for tensors on a DLPack device (created on first use)."""
    backend = _BACKEND_OF_DEVICE.get(device[0])
    if backend is None:
        raise InvalidArgumentError(
            f"tensors on {device_name(device)}: no spmla backend serves this device type "
            f"(cpu, cuda and rocm are known); pass handle= for a plugin backend")
    ordinal = 0 if backend == "cpu" else device[1]
    handles = getattr(_tls, "handles", None)
    if handles is None:
        handles = _tls.handles = {}
    h = handles.get((backend, ordinal))
    if h is None or h.closed:
        h = handles[(backend, ordinal)] = Handle(backend, ordinal)
    return h


def check_device(t: Any, handle: Handle, name: str) -> None:
    """Raises unless tensor view ``t`` lives where the handle's backend runs."""
    dev = tuple(t.device)
    backend = handle.backend
    if backend == "cpu":
        ok = dev[0] in _HOST_DEVICES
    elif backend == "cuda":
        ok = dev[0] in (DL_CUDA, DL_CUDA_MANAGED) and dev[1] == handle.device
    elif backend == "hip":
        ok = dev[0] == DL_ROCM and dev[1] == handle.device
    else:
        ok = True  # a third-party backend: its own validation decides
    if not ok:
        raise InvalidArgumentError(
            f"argument '{name}': tensor on {device_name(dev)} but the handle runs on "
            f"{backend}:{handle.device}")


# ------------------------------------------------------------------------------------------------
# Typed views and normalisation


class Typed:
    """An array tagged with the spmla dtype of its elements (see :func:`typed`)."""

    __slots__ = ("array", "dtype")

    def __init__(self, array: Any, dtype: Any) -> None:
        self.array = array
        self.dtype = as_dtype(dtype)

    def __repr__(self) -> str:
        return f"spmla.typed({type(self.array).__name__}, {self.dtype.name.lower()!r})"


def typed(array: Any, dtype: Any) -> Typed:
    """Tags ``array`` with the spmla dtype its elements hold, for frameworks that cannot say it
    through DLPack: e.g. ``spmla.typed(x_u16, "bf16")`` for bf16 bit patterns in a uint16 array
    (cupy) or ``spmla.typed(x_u8, "fp8_e4m3fnuz")`` for FNUZ bytes. No copy is made."""
    return Typed(array, dtype)


def unwrap(x: Any) -> Any:
    return x.array if isinstance(x, Typed) else x


def framework_of(x: Any) -> str:
    """"numpy", "torch", "cupy", "jax", ... (the top-level module of the array's type)."""
    x = unwrap(x)
    mod = type(x).__module__ or ""
    root = mod.split(".")[0]
    return "jax" if root == "jaxlib" else root


def device_of(x: Any) -> Tuple[int, int]:
    """The DLPack device (type, ordinal) of an array; buffer-protocol objects are on the CPU."""
    x = unwrap(x)
    f = getattr(x, "__dlpack_device__", None)
    if f is None:
        return (DL_CPU, 0)
    try:
        dt, di = f()
        return (int(dt), int(di))
    except Exception as e:  # a broken producer
        raise InvalidArgumentError(f"__dlpack_device__() failed: {e}") from None


# numpy dtypes (ml_dtypes) and torch dtypes that DLPack may not carry: viewed as raw integers
# of the same size and tagged with the spmla dtype.
_NUMPY_EXTENDED = {
    "bfloat16": (np.uint16, DType.BF16),
    "float8_e4m3fn": (np.uint8, DType.FP8_E4M3FN),
    "float8_e4m3fnuz": (np.uint8, DType.FP8_E4M3FNUZ),
    "float8_e8m0fnu": (np.uint8, DType.UE8M0),
}
_TORCH_EXTENDED = {
    "torch.float8_e4m3fn": DType.FP8_E4M3FN,
    "torch.float8_e4m3fnuz": DType.FP8_E4M3FNUZ,
    "torch.float8_e8m0fnu": DType.UE8M0,
}


def normalize(x: Any, dtype: Any = None) -> Tuple[Any, int]:
    """(object to export, dtype override) for an argument. An explicit dtype wins over an
    extended element type of the same size (FP8 bytes may be tagged with another flavor)."""
    override: Optional[DType] = as_dtype(dtype) if dtype is not None else None
    if isinstance(x, Typed):
        override = x.dtype
        x = x.array
    if isinstance(x, np.ndarray):
        ext = _NUMPY_EXTENDED.get(x.dtype.name)
        if ext is not None:
            raw, d = ext
            if override is None or override.itemsize == d.itemsize:
                x = x.view(raw)
                override = override or d
    elif framework_of(x) == "torch":
        d = _TORCH_EXTENDED.get(str(getattr(x, "dtype", "")))
        if d is not None and (override is None or override.itemsize == 1):
            import torch

            x = x.view(torch.uint8)
            override = override or d
    return x, int(override) if override is not None else 0


# ------------------------------------------------------------------------------------------------
# Streams


def stream_pointer(stream: Any) -> int:
    """The native stream handle of ``stream``: an int (cudaStream_t / hipStream_t value), a
    torch.cuda.Stream, a cupy Stream, or any object with ``__cuda_stream__``."""
    if isinstance(stream, bool):
        raise InvalidArgumentError(f"stream: {stream!r} is not a stream")
    if isinstance(stream, int):
        return stream
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        try:
            return int(proto()[1])
        except Exception as e:
            raise InvalidArgumentError(f"stream: __cuda_stream__() failed: {e}") from None
    for attr in ("cuda_stream", "ptr", "handle"):
        v = getattr(stream, attr, None)
        if isinstance(v, int):
            return v
    raise InvalidArgumentError(
        f"stream: {type(stream).__name__} is not a stream (pass an int handle, a "
        f"torch.cuda.Stream, a cupy Stream or an object with __cuda_stream__)")


def current_stream(frameworks: Iterable[str], device: Tuple[int, int]) -> int:
    """The current stream of the framework the arrays come from, on ``device``."""
    fws = set(frameworks)
    if "torch" in fws:
        import torch

        return int(torch.cuda.current_stream(device[1]).cuda_stream)
    if "cupy" in fws:
        import cupy

        with cupy.cuda.Device(device[1]):
            return int(cupy.cuda.get_current_stream().ptr)
    return 0


def resolve_stream(stream: Any, device: Tuple[int, int],
                   arrays: Sequence[Any]) -> Tuple[Optional[int], int]:
    """(value for __dlpack__(stream=...), native stream pointer for the C call)."""
    if device[0] in _HOST_DEVICES:
        return None, 0
    if stream is None:
        ptr = current_stream((framework_of(a) for a in arrays if a is not None), device)
    else:
        ptr = stream_pointer(stream)
    if device[0] in (DL_CUDA, DL_CUDA_MANAGED):
        # DLPack reserves 0 on CUDA; 1 names the legacy default stream, which NULL means.
        return (1 if ptr == 0 else ptr), ptr
    return ptr, ptr


# ------------------------------------------------------------------------------------------------
# Allocation


def _numpy_dtype(d: DType) -> Tuple[Any, int]:
    """numpy dtype for an spmla dtype, plus the override to pass when it is a raw stand-in."""
    if d is DType.BF16:
        try:
            import ml_dtypes

            return ml_dtypes.bfloat16, 0
        except ImportError:
            return np.uint16, int(DType.BF16)
    return {DType.FP16: np.float16, DType.FP32: np.float32, DType.INT32: np.int32,
            DType.INT64: np.int64, DType.UINT8: np.uint8}[d], 0


_TORCH_NAMES = {DType.BF16: "bfloat16", DType.FP16: "float16", DType.FP32: "float32",
                DType.INT32: "int32", DType.INT64: "int64", DType.UINT8: "uint8"}


MAX_EXTENT = 1 << 31  # every tensor extent of the C ABI is below 2^31 (validate.cpp)


def check_shape(fn: str, name: str, shape: Sequence[Any],
                itemsize: int) -> Tuple[Tuple[int, ...], int]:
    """(shape, byte size) of an output spmla is about to allocate, checked as the C library
    checks its tensors (each extent 0 .. 2^31-1, the byte size below 2^63) before any memory is
    asked for: a huge request is an spmla error, never numpy's MemoryError / ValueError or a
    crash."""
    out = []
    nbytes = int(itemsize)
    for d, s in enumerate(shape):
        try:
            v = operator.index(s)
        except TypeError:
            raise InvalidArgumentError(
                f"{fn}: {name}.shape[{d}]: expected an integer, got {s!r}") from None
        if v < 0:
            raise InvalidArgumentError(f"{fn}: {name}.shape[{d}]: expected 0 .. 2^31-1, got {v}")
        if v >= MAX_EXTENT:
            raise SizeOverflowError(f"{fn}: {name}.shape[{d}]: expected 0 .. 2^31-1, got {v}")
        nbytes *= v
        out.append(v)
    if nbytes >= 1 << 63:
        raise SizeOverflowError(f"{fn}: {name}: expected fewer than 2^63 bytes, got shape "
                                f"{tuple(out)} ({nbytes} bytes)")
    return tuple(out), nbytes


def guarded_allocation(fn: str, name: str, nbytes: int, make: Any) -> Any:
    """``make()``, with the allocator's failures turned into spmla errors."""
    try:
        return make()
    except MemoryError as e:  # numpy, cupy
        raise OutOfMemoryError(f"{fn}: {name}: expected an allocation of {nbytes} bytes to "
                               f"succeed, got {type(e).__name__}: {e}") from None
    except (ValueError, OverflowError) as e:  # numpy: "array is too big"
        raise SizeOverflowError(f"{fn}: {name}: expected an allocatable size, got {nbytes} "
                                f"bytes ({type(e).__name__}: {e})") from None
    except RuntimeError as e:  # torch.OutOfMemoryError and friends
        if "out of memory" in str(e).lower():
            raise OutOfMemoryError(f"{fn}: {name}: expected an allocation of {nbytes} bytes to "
                                   f"succeed, got {type(e).__name__}: {e}") from None
        raise


def allocate(like: Any, device: Tuple[int, int], shape: Sequence[int],
             dtype: DType) -> Tuple[Any, int]:
    """(array, dtype override): an uninitialised array of ``shape`` on ``device`` from the
    framework of ``like`` (numpy on the CPU; torch or cupy on a GPU). Where the framework has no
    bf16 (numpy without ml_dtypes, cupy) the array is uint16 and the override says bf16."""
    shape = tuple(int(s) for s in shape)
    fw = framework_of(like)
    like = unwrap(like)
    if fw == "torch":
        import torch

        return torch.empty(shape, dtype=getattr(torch, _TORCH_NAMES[dtype]),
                           device=like.device), 0
    if device[0] in _HOST_DEVICES:
        npd, ov = _numpy_dtype(dtype)
        return np.empty(shape, dtype=npd), ov
    if fw != "cupy":
        try:
            import torch

            if device[0] in (DL_CUDA, DL_ROCM):
                return torch.empty(shape, dtype=getattr(torch, _TORCH_NAMES[dtype]),
                                   device=torch.device("cuda", device[1])), 0
        except ImportError:
            pass
    try:
        import cupy
    except ImportError:
        raise InvalidArgumentError(
            f"cannot allocate an output on {device_name(device)} for {fw} inputs (neither torch "
            f"nor cupy is importable): pass the output array explicitly") from None
    with cupy.cuda.Device(device[1]):
        if dtype is DType.BF16:
            return cupy.empty(shape, dtype=np.uint16), int(DType.BF16)
        return cupy.empty(shape, dtype=_numpy_dtype(dtype)[0]), 0


def allocate_bytes(like: Any, device: Tuple[int, int], nbytes: int, align: int = 256) -> Any:
    """A uint8 array of at least ``nbytes`` whose first byte is ``align``-aligned."""
    if device[0] in _HOST_DEVICES and framework_of(like) != "torch":
        raw = np.empty(nbytes + align, dtype=np.uint8)
        off = (-raw.ctypes.data) % align
        return raw[off:off + nbytes]
    return allocate(like, device, (max(nbytes, 1),), DType.UINT8)[0]


# ------------------------------------------------------------------------------------------------
# One call's context


class Call:
    """Device, handle and stream of one operation call, and the conversion of its arrays."""

    def __init__(self, primary: Any, handle: Optional[Handle], stream: Any,
                 arrays: Sequence[Any] = (), fn: str = "spmla") -> None:
        self.fn = fn
        if primary is None:
            raise InvalidArgumentError(f"{fn}: a required array argument is None")
        self.like = primary
        self.device = device_of(primary)
        if handle is not None and not isinstance(handle, Handle):
            raise InvalidArgumentError(f"handle: expected spmla.Handle, got {type(handle).__name__}")
        self.handle = handle if handle is not None else default_handle(self.device)
        if self.handle.closed:
            raise InvalidArgumentError("handle: the spmla handle is closed")
        self.dl_stream, self.stream = resolve_stream(stream, self.device, [primary, *arrays])

    def view(self, x: Any, name: str, dtype: Any = None, writable: bool = False) -> Any:
        """A zero-copy spmla tensor view of ``x`` (None stays None)."""
        if x is None:
            return None
        obj, ov = normalize(x, dtype)
        dev = device_of(obj)
        t = _spmla.Tensor(obj, name, ov, None if dev[0] in _HOST_DEVICES else self.dl_stream,
                          writable)
        check_device(t, self.handle, name)
        return t

    def raw_view(self, x: Any, name: str, writable: bool = False) -> Any:
        """A view of memory whose element type does not matter (cache pages)."""
        obj, _ = normalize(x, None)
        dev = device_of(obj)
        t = _spmla.Tensor(obj, name, ANY_DTYPE,
                          None if dev[0] in _HOST_DEVICES else self.dl_stream, writable)
        check_device(t, self.handle, name)
        return t

    def output(self, given: Any, name: str, shape: Sequence[int], dtype: DType,
               dtype_override: Any = None) -> Tuple[Any, Any]:
        """(array to return, view) for an output: ``given`` when the caller passed one, else a
        fresh array from the inputs' framework."""
        if given is not None:
            return given, self.view(given, name, dtype=dtype_override, writable=True)
        shape, nbytes = check_shape(self.fn, name, shape, dtype.itemsize)
        arr, ov = guarded_allocation(self.fn, name, nbytes,
                                     lambda: allocate(self.like, self.device, shape, dtype))
        return arr, self.view(arr, name, dtype=ov or None, writable=True)


# ------------------------------------------------------------------------------------------------
# Workspace


class Workspace:
    """Scratch memory for plans and runs, reused across calls and layers.

    It grows on demand (through the framework of the arrays it serves: numpy on the CPU,
    torch or cupy on a GPU) and never shrinks. One Workspace serves one stream at a time; give
    each concurrently running plan its own. ``Workspace(buffer=arr)`` wraps memory the caller
    allocated (a contiguous array; a too small one raises WorkspaceTooSmallError).
    """

    def __init__(self, nbytes: int = 0, *, buffer: Any = None) -> None:
        if nbytes < 0:
            raise InvalidArgumentError(f"nbytes: {nbytes} is negative")
        self._reserve = int(nbytes)
        self._buffer = buffer
        self._fixed = buffer is not None
        self._device: Optional[Tuple[int, int]] = device_of(buffer) if buffer is not None else None

    @property
    def buffer(self) -> Any:
        """The current backing array (None before first use)."""
        return self._buffer

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        if self._buffer is None:
            return 0
        b = unwrap(self._buffer)
        return int(getattr(b, "nbytes", 0) or len(memoryview(b).cast("B")))

    def _acquire(self, call: Call, nbytes: int) -> Any:
        """A view of at least ``nbytes`` on the call's device (the C call checks the size)."""
        if self._fixed:
            return call.raw_view(self._buffer, "workspace", writable=True)
        need = max(int(nbytes), self._reserve)
        if need == 0:
            return None
        if self._buffer is None or self._device != call.device or self.nbytes < need:
            self._buffer = allocate_bytes(call.like, call.device, need)
            self._device = call.device
        return call.raw_view(self._buffer, "workspace", writable=True)

    def __repr__(self) -> str:
        where = device_name(self._device) if self._device else "unallocated"
        return f"spmla.Workspace({self.nbytes} bytes, {where})"


def workspace_view(ws: Any, call: Call, nbytes: int) -> Tuple[Any, Any]:
    """(Workspace object to keep, view for the C call) for a ``workspace=`` argument."""
    if ws is None:
        ws = Workspace()
    elif not isinstance(ws, Workspace):
        ws = Workspace(buffer=ws)
    return ws, ws._acquire(call, nbytes)
