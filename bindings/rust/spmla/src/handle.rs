//! Library queries, handles, device memory, workspaces, streams and events.
use std::alloc::{self, Layout};
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::{c_char, c_void};
use std::ptr::{self, NonNull};

use spmla_sys as sys;

use crate::error::{check, static_str, Error, Result};
use crate::kv::{KvCache, KvCacheDesc};
use crate::tensor::{TensorMut, TensorRef};
use crate::types::DType;

/// The version of the loaded library, `major·10000 + minor·100 + patch`.
pub fn version_number() -> u32 {
    // SAFETY: pure query.
    unsafe { sys::spmla_version_number() }
}

/// The version of the loaded library as `"MAJOR.MINOR.PATCH"`.
pub fn version_string() -> &'static str {
    // SAFETY: static string, never NULL.
    unsafe { static_str(sys::spmla_version_string()) }
}

/// The ABI version of the loaded library as `(major, minor)`.
pub fn abi_version() -> (u16, u16) {
    // SAFETY: pure query.
    let v = unsafe { sys::spmla_abi_version() };
    ((v >> 16) as u16, (v & 0xFFFF) as u16)
}

/// What the library knows about one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// `"cpu"`, `"cuda"`, `"hip"` or a third-party plugin's name.
    pub name: String,
    /// Whether handles can be created on it.
    pub available: bool,
    /// Why it is not available (empty if it is).
    pub reason: String,
    /// Number of devices.
    pub device_count: i32,
    /// Path of the plugin library (empty for the built-in CPU backend).
    pub library: String,
}

/// What the library knows about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// E.g. `"NVIDIA H200"`.
    pub name: String,
    /// E.g. `"sm_90"`, `"gfx942"`, `"cpu"`.
    pub arch: String,
    /// Device memory in bytes.
    pub total_memory_bytes: i64,
    /// SMs, CUs or CPU threads.
    pub multiprocessor_count: i32,
    /// 32 on NVIDIA, 64 on CDNA, 1 on the CPU.
    pub warp_size: i32,
    /// The device converts OCP FP8 in hardware.
    pub fp8_e4m3fn_native: bool,
    /// The device converts FNUZ FP8 in hardware.
    pub fp8_e4m3fnuz_native: bool,
}

fn lossy(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: NUL-terminated string from the library.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn lossy_array(a: &[c_char]) -> String {
    let bytes: Vec<u8> = a
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} {s:?} contains a NUL byte")))
}

/// Every backend the library knows (built in, plugins found, plugins expected).
pub fn backends() -> Result<Vec<BackendInfo>> {
    let mut n = 0i32;
    // SAFETY: valid output pointer.
    check(unsafe { sys::spmla_backend_count(&mut n) })?;
    let mut v = Vec::with_capacity(n.max(0) as usize);
    for i in 0..n {
        let mut info = sys::spmla_backend_info_t {
            struct_size: std::mem::size_of::<sys::spmla_backend_info_t>(),
            name: ptr::null(),
            available: 0,
            reason: ptr::null(),
            device_count: 0,
            library: ptr::null(),
        };
        // SAFETY: valid index and output struct with struct_size set.
        check(unsafe { sys::spmla_backend_get_info(i, &mut info) })?;
        v.push(BackendInfo {
            name: lossy(info.name),
            available: info.available != 0,
            reason: lossy(info.reason),
            device_count: info.device_count,
            library: lossy(info.library),
        });
    }
    Ok(v)
}

/// Information about device `device` of the named backend.
pub fn device_info(backend: &str, device: i32) -> Result<DeviceInfo> {
    let name = c_string("backend name", backend)?;
    // SAFETY: an all-zero spmla_device_info_t is a valid value (integers and arrays).
    let mut info: sys::spmla_device_info_t = unsafe { std::mem::zeroed() };
    info.struct_size = std::mem::size_of::<sys::spmla_device_info_t>();
    // SAFETY: valid C string and output struct.
    check(unsafe { sys::spmla_device_get_info(name.as_ptr(), device, &mut info) })?;
    Ok(DeviceInfo {
        name: lossy_array(&info.name),
        arch: lossy_array(&info.arch),
        total_memory_bytes: info.total_memory_bytes,
        multiprocessor_count: info.multiprocessor_count,
        warp_size: info.warp_size,
        fp8_e4m3fn_native: info.fp8_e4m3fn_native != 0,
        fp8_e4m3fnuz_native: info.fp8_e4m3fnuz_native != 0,
    })
}

/// A device stream (`cudaStream_t` / `hipStream_t`) that run calls queue work on.
/// [`Stream::DEFAULT`] is the default stream; the CPU backend ignores streams and
/// runs synchronously.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream(*mut c_void);

// SAFETY: a stream is an opaque token that the vendor runtimes let any thread use.
unsafe impl Send for Stream {}
unsafe impl Sync for Stream {}

impl Stream {
    /// The default stream (NULL).
    pub const DEFAULT: Stream = Stream(ptr::null_mut());

    /// A stream from its vendor handle.
    ///
    /// # Safety
    /// `raw` must be a live stream of the runtime of the handles it is used with
    /// (or NULL), and stay live while work queued on it runs.
    pub unsafe fn from_raw(raw: *mut c_void) -> Stream {
        Stream(raw)
    }

    /// The vendor handle.
    pub fn as_raw(self) -> *mut c_void {
        self.0
    }
}

impl Default for Stream {
    fn default() -> Stream {
        Stream::DEFAULT
    }
}

/// An option of a [`Handle`] (ABI 1.3, `spmla_option_t`), set with [`Handle::set_option`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandleOption {
    /// `SPMLA_OPTION_BATCH_INVARIANT`: 0 (default, speed first) or 1. With 1, every
    /// operation's result for a token is bit-identical whatever the other tokens of the
    /// call are (batch size, their lengths, their index lists): docs/SPEC.md "Batch
    /// invariance".
    BatchInvariant,
}

impl HandleOption {
    /// The C enum value.
    pub fn to_raw(self) -> sys::spmla_option_t {
        match self {
            HandleOption::BatchInvariant => sys::SPMLA_OPTION_BATCH_INVARIANT,
        }
    }
}

/// A handle on one device of one backend: the object every operation runs on.
///
/// Following the C header's threading rules, a handle is used by one thread at a
/// time: it is `Send` (it can move to another thread) but not `Sync` (it cannot be
/// shared between threads). Different handles may run concurrently.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<spmla::Handle>();
/// ```
///
/// ```
/// let h = spmla::Handle::new("cpu", 0)?;
/// std::thread::spawn(move || assert_eq!(h.backend_name(), "cpu")).join().unwrap();
/// # Ok::<(), spmla::Error>(())
/// ```
#[derive(Debug)]
pub struct Handle {
    raw: sys::spmla_handle_t,
    // The raw pointer already makes the type !Send and !Sync; Send is added below.
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: the header allows a handle to be used by any thread, one at a time.
// Not Sync: two threads may not use one handle at once.
unsafe impl Send for Handle {}

impl Handle {
    /// Creates a handle on device `device` of `backend` (`"cpu"`, `"cuda"`,
    /// `"hip"`, a plugin's name, or `"auto"` for the best available one).
    pub fn new(backend: &str, device: i32) -> Result<Handle> {
        let name = c_string("backend name", backend)?;
        let mut raw: sys::spmla_handle_t = ptr::null_mut();
        // SAFETY: valid C string and output pointer.
        check(unsafe { sys::spmla_handle_create(name.as_ptr(), device, &mut raw) })?;
        Ok(Handle {
            raw,
            _not_sync: PhantomData,
        })
    }

    /// A handle on the built-in CPU reference backend.
    pub fn cpu() -> Result<Handle> {
        Handle::new("cpu", 0)
    }

    /// The backend's name (`"cpu"`, `"cuda"`, ...).
    pub fn backend_name(&self) -> &str {
        // SAFETY: live handle; the name is static for the library's lifetime.
        unsafe { static_str(sys::spmla_handle_backend_name(self.raw)) }
    }

    /// The device ordinal.
    pub fn device(&self) -> Result<i32> {
        let mut d = 0;
        // SAFETY: live handle, valid output pointer.
        check(unsafe { sys::spmla_handle_device(self.raw, &mut d) })?;
        Ok(d)
    }

    /// Sets an option for the handle's later calls. Takes `&mut self`: no [`Plan`](crate::Plan)
    /// of the handle is alive, so none keeps a schedule made under the old value.
    pub fn set_option(&mut self, option: HandleOption, value: i64) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { sys::spmla_handle_set_option(self.raw, option.to_raw(), value) })
    }

    /// The current value of an option (its default if never set).
    pub fn option(&self, option: HandleOption) -> Result<i64> {
        let mut v = 0i64;
        // SAFETY: live handle, valid output pointer.
        check(unsafe { sys::spmla_handle_get_option(self.raw, option.to_raw(), &mut v) })?;
        Ok(v)
    }

    /// `set_option(HandleOption::BatchInvariant, on as i64)`.
    pub fn set_batch_invariant(&mut self, on: bool) -> Result<()> {
        self.set_option(HandleOption::BatchInvariant, on as i64)
    }

    /// Whether `SPMLA_OPTION_BATCH_INVARIANT` is on.
    pub fn batch_invariant(&self) -> Result<bool> {
        Ok(self.option(HandleOption::BatchInvariant)? != 0)
    }

    /// The C handle (still owned by `self`).
    pub fn as_raw(&self) -> sys::spmla_handle_t {
        self.raw
    }

    /// Allocates `bytes` of device memory (256-byte aligned; host memory on "cpu").
    pub fn alloc(&self, bytes: usize) -> Result<DeviceBuffer<'_>> {
        let mut p: *mut c_void = ptr::null_mut();
        // SAFETY: live handle, valid output pointer.
        check(unsafe { sys::spmla_device_malloc(self.raw, bytes, &mut p) })?;
        Ok(DeviceBuffer {
            handle: self,
            ptr: p,
            len: bytes,
        })
    }

    /// Waits for all work queued on `stream`.
    pub fn synchronize(&self, stream: Stream) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { sys::spmla_stream_synchronize(self.raw, stream.0) })
    }

    /// Creates a timing event.
    pub fn event(&self) -> Result<Event<'_>> {
        let mut e: sys::spmla_event_t = ptr::null_mut();
        // SAFETY: live handle, valid output pointer.
        check(unsafe { sys::spmla_event_create(self.raw, &mut e) })?;
        Ok(Event {
            handle: self,
            raw: e,
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: we own the handle. A failure cannot be reported from drop.
        unsafe {
            sys::spmla_handle_destroy(self.raw);
        }
    }
}

/// Device memory from [`Handle::alloc`], freed on drop.
#[derive(Debug)]
pub struct DeviceBuffer<'h> {
    handle: &'h Handle,
    ptr: *mut c_void,
    len: usize,
}

impl<'h> DeviceBuffer<'h> {
    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device pointer.
    pub fn as_ptr(&self) -> *mut c_void {
        self.ptr
    }

    fn range(&self, offset: usize, bytes: usize) -> Result<()> {
        if offset.checked_add(bytes).map_or(true, |end| end > self.len) {
            return Err(Error::invalid(format!(
                "{bytes} bytes at offset {offset} exceed the {}-byte device buffer",
                self.len
            )));
        }
        Ok(())
    }

    /// Copies host bytes into the buffer at `offset` and waits for the copy.
    pub fn copy_from_host<T: crate::Element>(&mut self, offset: usize, src: &[T]) -> Result<()> {
        let bytes = std::mem::size_of_val(src);
        self.range(offset, bytes)?;
        // SAFETY: both ranges checked; synchronous on the default stream.
        unsafe {
            check(sys::spmla_memcpy(
                self.handle.raw,
                (self.ptr as *mut u8).add(offset) as *mut c_void,
                src.as_ptr() as *const c_void,
                bytes,
                sys::SPMLA_MEMCPY_HOST_TO_DEVICE,
                ptr::null_mut(),
            ))?;
        }
        self.handle.synchronize(Stream::DEFAULT)
    }

    /// Copies bytes at `offset` of the buffer into host memory and waits for the copy.
    pub fn copy_to_host<T: crate::Element>(&self, offset: usize, dst: &mut [T]) -> Result<()> {
        let bytes = std::mem::size_of_val(dst);
        self.range(offset, bytes)?;
        // SAFETY: both ranges checked; synchronous on the default stream. Every
        // Element type is valid for any bit pattern.
        unsafe {
            check(sys::spmla_memcpy(
                self.handle.raw,
                dst.as_mut_ptr() as *mut c_void,
                (self.ptr as *const u8).add(offset) as *const c_void,
                bytes,
                sys::SPMLA_MEMCPY_DEVICE_TO_HOST,
                ptr::null_mut(),
            ))?;
        }
        self.handle.synchronize(Stream::DEFAULT)
    }

    /// Fills the whole buffer with the byte `value` on `stream`.
    pub fn fill(&mut self, value: u8, stream: Stream) -> Result<()> {
        // SAFETY: the buffer's own range.
        check(unsafe {
            sys::spmla_memset(self.handle.raw, self.ptr, value as i32, self.len, stream.0)
        })
    }

    /// A read-only tensor view of the buffer's start.
    pub fn tensor(&self, dtype: DType, shape: &[i64]) -> Result<TensorRef<'_>> {
        // SAFETY: contiguous view of memory this buffer owns, checked below; the
        // shared borrow of self keeps writable views away.
        let t = unsafe { TensorRef::from_raw_parts(self.ptr, dtype, shape, None)? };
        self.range(0, (t.numel() as usize) * dtype.size())?;
        Ok(t)
    }

    /// A writable tensor view of the buffer's start.
    pub fn tensor_mut(&mut self, dtype: DType, shape: &[i64]) -> Result<TensorMut<'_>> {
        // SAFETY: contiguous view of memory this buffer owns, checked below; the
        // exclusive borrow of self keeps other views away.
        let t = unsafe { TensorMut::from_raw_parts(self.ptr, dtype, shape, None)? };
        self.range(0, (t.numel() as usize) * dtype.size())?;
        Ok(t)
    }

    /// A KV cache over the buffer (which must hold `desc.size_bytes()`).
    pub fn kv_cache(&mut self, desc: KvCacheDesc) -> Result<KvCache<'_>> {
        self.range(0, desc.size_bytes()?)?;
        // SAFETY: the buffer holds the cache's bytes, 256-byte aligned, borrowed
        // exclusively for the cache's lifetime.
        unsafe { KvCache::from_raw_parts(self.ptr, desc) }
    }
}

impl Drop for DeviceBuffer<'_> {
    fn drop(&mut self) {
        // SAFETY: memory from spmla_device_malloc on this handle.
        unsafe {
            sys::spmla_device_free(self.handle.raw, self.ptr);
        }
    }
}

/// Reusable scratch memory for operations that need a workspace
/// ([`Handle::indexer_logits`], [`Handle::topk_per_row`], ...). It grows to the
/// size each call queries and keeps its memory for the next one.
#[derive(Debug)]
pub struct Workspace<'h> {
    handle: &'h Handle,
    buf: Option<DeviceBuffer<'h>>,
}

impl<'h> Workspace<'h> {
    /// An empty workspace on `handle`.
    pub fn new(handle: &'h Handle) -> Workspace<'h> {
        Workspace { handle, buf: None }
    }

    /// Makes sure the workspace holds at least `bytes` (reallocating if not).
    pub fn reserve(&mut self, bytes: usize) -> Result<()> {
        if bytes > self.len() {
            self.buf = None;
            self.buf = Some(self.handle.alloc(bytes)?);
        }
        Ok(())
    }

    /// Current size in bytes.
    pub fn len(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len())
    }

    /// Whether no memory is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device pointer (NULL while empty).
    pub fn as_ptr(&self) -> *mut c_void {
        self.buf.as_ref().map_or(ptr::null_mut(), |b| b.ptr)
    }

    pub(crate) fn handle(&self) -> &'h Handle {
        self.handle
    }
}

/// A timing event on a handle, destroyed on drop.
#[derive(Debug)]
pub struct Event<'h> {
    handle: &'h Handle,
    raw: sys::spmla_event_t,
}

impl Event<'_> {
    /// Records the event on `stream`.
    pub fn record(&self, stream: Stream) -> Result<()> {
        // SAFETY: live event of this handle.
        check(unsafe { sys::spmla_event_record(self.handle.raw, self.raw, stream.0) })
    }

    /// Milliseconds from `self` to `end` (waits for `end`). Both must be recorded.
    pub fn elapsed_ms(&self, end: &Event<'_>) -> Result<f32> {
        let mut ms = 0f32;
        // SAFETY: live events, valid output pointer.
        check(unsafe { sys::spmla_event_elapsed_ms(self.handle.raw, self.raw, end.raw, &mut ms) })?;
        Ok(ms)
    }
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the event.
        unsafe {
            sys::spmla_event_destroy(self.handle.raw, self.raw);
        }
    }
}

/// Host memory aligned to 256 bytes holding `len` elements of `T`: for the
/// tensors and KV caches of the "cpu" backend, which (like every backend) wants
/// `q`, `out`, caches and a few others 16-byte aligned, more than `Vec` promises.
/// Dereferences to `[T]`.
pub struct HostBuffer<T: crate::Element = u8> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: owned memory of plain data, like Vec<T>.
unsafe impl<T: crate::Element> Send for HostBuffer<T> {}
unsafe impl<T: crate::Element> Sync for HostBuffer<T> {}

impl<T: crate::Element> HostBuffer<T> {
    const ALIGN: usize = 256;

    fn layout(len: usize) -> Layout {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("buffer size overflows");
        Layout::from_size_align(bytes, Self::ALIGN).expect("buffer size overflows")
    }

    /// `len` elements with all bits zero (0, 0.0, or the zero FP8/bf16 code).
    pub fn zeroed(len: usize) -> HostBuffer<T> {
        if len == 0 {
            return HostBuffer {
                ptr: NonNull::<[u8; 256]>::dangling().cast(),
                len: 0,
            };
        }
        let layout = Self::layout(len);
        // SAFETY: non-zero size; every Element type is valid for all-zero bits.
        let p = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p as *mut T).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        HostBuffer { ptr, len }
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> HostBuffer<T> {
        let mut b = HostBuffer::zeroed(len);
        b.fill(value);
        b
    }

    /// A copy of `src`.
    pub fn from_slice(src: &[T]) -> HostBuffer<T> {
        let mut b = HostBuffer::zeroed(src.len());
        b.copy_from_slice(src);
        b
    }
}

impl<T: crate::Element> std::ops::Deref for HostBuffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: len initialised elements owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: crate::Element> std::ops::DerefMut for HostBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: crate::Element> Clone for HostBuffer<T> {
    fn clone(&self) -> HostBuffer<T> {
        HostBuffer::from_slice(self)
    }
}

impl<T: crate::Element> Drop for HostBuffer<T> {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in zeroed() with this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr() as *mut u8, Self::layout(self.len)) }
        }
    }
}

impl<T: crate::Element + std::fmt::Debug> std::fmt::Debug for HostBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
