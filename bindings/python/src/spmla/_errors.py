"""spmla exceptions: one class per C status, each carrying the library's message."""

from __future__ import annotations

__all__ = [
    "Error",
    "InvalidArgumentError",
    "UnsupportedError",
    "BackendUnavailableError",
    "OutOfMemoryError",
    "WorkspaceTooSmallError",
    "MisalignedError",
    "SizeOverflowError",
    "DeviceError",
    "AbiMismatchError",
    "InternalError",
    "HandleBusyError",
    "error_class",
]


class Error(RuntimeError):
    """Base class of every spmla failure.

    Attributes:
        status: the C status code (``spmla_status_t``), e.g. 1 for INVALID_ARGUMENT.
        status_name: its name, e.g. ``"SPMLA_STATUS_INVALID_ARGUMENT"``.
        message: the per-thread message of the C library (``spmla_last_error_message``),
            naming the argument, what was expected and what was given.
    """

    status: int = -1
    status_name: str = "SPMLA_STATUS_UNKNOWN"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None and status != type(self).status:
            self.status = status
            self.status_name = _NAMES.get(status, "SPMLA_STATUS_UNKNOWN")

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]"


class InvalidArgumentError(Error, ValueError):
    """A null, dtype, rank, shape, stride, device or value error in the arguments."""

    status = 1
    status_name = "SPMLA_STATUS_INVALID_ARGUMENT"


class UnsupportedError(Error):
    """A valid request that this backend or device cannot perform."""

    status = 2
    status_name = "SPMLA_STATUS_UNSUPPORTED"


class BackendUnavailableError(Error):
    """The backend was not found, could not be loaded or has no device."""

    status = 3
    status_name = "SPMLA_STATUS_BACKEND_UNAVAILABLE"


class OutOfMemoryError(Error, MemoryError):
    """A host or device allocation failed."""

    status = 4
    status_name = "SPMLA_STATUS_OUT_OF_MEMORY"


class WorkspaceTooSmallError(Error, ValueError):
    """The workspace is smaller than the size query asked for."""

    status = 5
    status_name = "SPMLA_STATUS_WORKSPACE_TOO_SMALL"


class MisalignedError(Error, ValueError):
    """A pointer or stride violates the alignment an operation needs."""

    status = 6
    status_name = "SPMLA_STATUS_MISALIGNED"


class SizeOverflowError(Error, OverflowError):
    """Sizes overflow 64 bits or the index range."""

    status = 7
    status_name = "SPMLA_STATUS_SIZE_OVERFLOW"


class DeviceError(Error):
    """The vendor runtime (CUDA, HIP) reported an error."""

    status = 8
    status_name = "SPMLA_STATUS_DEVICE_ERROR"


class AbiMismatchError(Error):
    """A plugin or caller was built against another ABI version."""

    status = 9
    status_name = "SPMLA_STATUS_ABI_MISMATCH"


class InternalError(Error):
    """A bug in spmla: please report it with the message."""

    status = 10
    status_name = "SPMLA_STATUS_INTERNAL"


class HandleBusyError(Error):
    """The handle is in use by a call on another thread (libspmla 1.1+); nothing was done.

    A handle serves one thread at a time: use one handle per thread.
    """

    status = 11
    status_name = "SPMLA_STATUS_HANDLE_BUSY"


_CLASSES: dict[int, type[Error]] = {
    c.status: c
    for c in (
        InvalidArgumentError,
        UnsupportedError,
        BackendUnavailableError,
        OutOfMemoryError,
        WorkspaceTooSmallError,
        MisalignedError,
        SizeOverflowError,
        DeviceError,
        AbiMismatchError,
        InternalError,
        HandleBusyError,
    )
}
_NAMES: dict[int, str] = {s: c.status_name for s, c in _CLASSES.items()}


def error_class(status: int) -> type[Error]:
    """The exception class for a C status code (:class:`Error` for an unknown one)."""
    return _CLASSES.get(int(status), Error)
