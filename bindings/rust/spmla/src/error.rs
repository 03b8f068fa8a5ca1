//! Status codes and the error type every fallible call returns.
use std::ffi::CStr;
use std::fmt;

use spmla_sys as sys;

/// The status of a failed call: the C `spmla_status_t` values, plus
/// [`Status::Unknown`] for a value this crate does not know (from a newer library).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `SPMLA_STATUS_SUCCESS` (never carried by an [`Error`] that came from the library).
    Success,
    /// Null pointer, wrong dtype, rank, shape, stride or value.
    InvalidArgument,
    /// A valid request that this backend or device cannot do.
    Unsupported,
    /// Backend not found, not loadable, or without a device.
    BackendUnavailable,
    /// A host or device allocation failed.
    OutOfMemory,
    /// The workspace is smaller than the size query said.
    WorkspaceTooSmall,
    /// A pointer or stride violates an alignment rule.
    Misaligned,
    /// Sizes overflow 64 bits or the index range.
    SizeOverflow,
    /// The vendor runtime reported an error.
    DeviceError,
    /// Plugin or caller ABI version mismatch.
    AbiMismatch,
    /// A bug in spmla.
    Internal,
    /// The handle is in use by a call on another thread (ABI 1.1); nothing was done.
    HandleBusy,
    /// A status value this version of the crate does not know.
    Unknown(u32),
}

impl Status {
    /// The status for a raw C value.
    pub fn from_raw(code: sys::spmla_status_t) -> Status {
        match code {
            sys::SPMLA_STATUS_SUCCESS => Status::Success,
            sys::SPMLA_STATUS_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::SPMLA_STATUS_UNSUPPORTED => Status::Unsupported,
            sys::SPMLA_STATUS_BACKEND_UNAVAILABLE => Status::BackendUnavailable,
            sys::SPMLA_STATUS_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::SPMLA_STATUS_WORKSPACE_TOO_SMALL => Status::WorkspaceTooSmall,
            sys::SPMLA_STATUS_MISALIGNED => Status::Misaligned,
            sys::SPMLA_STATUS_SIZE_OVERFLOW => Status::SizeOverflow,
            sys::SPMLA_STATUS_DEVICE_ERROR => Status::DeviceError,
            sys::SPMLA_STATUS_ABI_MISMATCH => Status::AbiMismatch,
            sys::SPMLA_STATUS_INTERNAL => Status::Internal,
            sys::SPMLA_STATUS_HANDLE_BUSY => Status::HandleBusy,
            other => Status::Unknown(other),
        }
    }

    /// The raw C value of this status.
    pub fn code(self) -> sys::spmla_status_t {
        match self {
            Status::Success => sys::SPMLA_STATUS_SUCCESS,
            Status::InvalidArgument => sys::SPMLA_STATUS_INVALID_ARGUMENT,
            Status::Unsupported => sys::SPMLA_STATUS_UNSUPPORTED,
            Status::BackendUnavailable => sys::SPMLA_STATUS_BACKEND_UNAVAILABLE,
            Status::OutOfMemory => sys::SPMLA_STATUS_OUT_OF_MEMORY,
            Status::WorkspaceTooSmall => sys::SPMLA_STATUS_WORKSPACE_TOO_SMALL,
            Status::Misaligned => sys::SPMLA_STATUS_MISALIGNED,
            Status::SizeOverflow => sys::SPMLA_STATUS_SIZE_OVERFLOW,
            Status::DeviceError => sys::SPMLA_STATUS_DEVICE_ERROR,
            Status::AbiMismatch => sys::SPMLA_STATUS_ABI_MISMATCH,
            Status::Internal => sys::SPMLA_STATUS_INTERNAL,
            Status::HandleBusy => sys::SPMLA_STATUS_HANDLE_BUSY,
            Status::Unknown(code) => code,
        }
    }

    /// The library's name of the status, e.g. `"SPMLA_STATUS_INVALID_ARGUMENT"`
    /// (`"SPMLA_STATUS_UNKNOWN"` for values the library does not know).
    pub fn name(self) -> &'static str {
        // SAFETY: spmla_status_string returns a static, NUL-terminated string, never NULL.
        unsafe { static_str(sys::spmla_status_string(self.code())) }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error from spmla: the status and the message that names the argument,
/// what was expected and what was given.
///
/// Errors raised by the library carry the calling thread's
/// `spmla_last_error_message()` captured right after the failing call. Errors
/// raised by this crate before calling the library (a slice too short for a
/// shape, a plan used with other shapes) have a message starting with `spmla-rs:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// An error with the given status and message.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// The error of a failed library call: its status and this thread's last message.
    pub(crate) fn from_last(code: sys::spmla_status_t) -> Error {
        // SAFETY: never NULL; valid until the next spmla call on this thread, and we
        // copy it before making one.
        let message = unsafe { CStr::from_ptr(sys::spmla_last_error_message()) }
            .to_string_lossy()
            .into_owned();
        Error {
            status: Status::from_raw(code),
            message,
        }
    }

    /// A crate-side invalid-argument error.
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(
            Status::InvalidArgument,
            format!("spmla-rs: {}", message.into()),
        )
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message (may be empty if the library gave none).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{}: {}", self.status, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Turns a C status into a `Result`, capturing the message on failure.
#[inline]
pub(crate) fn check(code: sys::spmla_status_t) -> Result<()> {
    if code == sys::SPMLA_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::from_last(code))
    }
}

/// A static C string from the library as `&'static str` ("" for NULL).
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string that lives as long as the library.
pub(crate) unsafe fn static_str(p: *const std::os::raw::c_char) -> &'static str {
    if p.is_null() {
        return "";
    }
    // SAFETY: per the contract above.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
}
