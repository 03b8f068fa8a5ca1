//! Safe Rust interface to **spmla**, the portable sparse-MLA library
//! (DeepSeek-V3.2 / V4 sparse attention, its index helpers, the lightning
//! indexer, top-k and the paged KV-cache formats).
//!
//! The crate wraps the stable C ABI (`include/spmla.h`, raw in [`sys`]):
//!
//! - a [`Handle`] on one device of one backend (`"cpu"`, `"cuda"`, `"hip"`, or a
//!   plugin) runs every operation; it is `Send` but not `Sync`, as the header's
//!   threading rules say (one thread at a time per handle);
//! - tensors are views: [`TensorRef`] / [`TensorMut`] borrow host slices (for the
//!   CPU backend) or wrap device pointers (`unsafe` constructors, or safely from a
//!   [`DeviceBuffer`]);
//! - KV caches are a [`KvCacheDesc`] (layout, FP8 flavor, pages) over memory: [`KvCache`];
//! - every call returns [`Result`], whose [`Error`] carries the status and the
//!   library's message naming the argument at fault;
//! - sparse attention goes through a [`Plan`] that owns its workspace; the ops
//!   that need scratch memory take a reusable [`Workspace`].
//!
//! # A DeepSeek-V3.2 decode step on the CPU backend
//! ```
//! use spmla::*;
//! # fn main() -> Result<()> {
//! let h = Handle::cpu()?;
//! // A V3.2 "fp8_ds_mla" cache of 4 pages × 64 tokens.
//! let desc = KvCacheDesc::v32_fp8(4, 64);
//! let mut mem = HostBuffer::zeroed(desc.size_bytes()?);
//! let mut cache = KvCache::new(&mut mem, desc)?;
//! // Store 3 tokens (bf16 rows of 576) into slots 0, 1, 2.
//! let rows = HostBuffer::filled(3 * 576, Bf16::from_f32(0.5));
//! let slots = [0i32, 1, 2];
//! h.kv_cache_store(&TensorRef::new(&rows, &[3, 576])?, &TensorRef::new(&slots, &[3])?,
//!                  &mut cache, Stream::DEFAULT)?;
//! // One token, 16 heads, attends those 3 slots.
//! // q and out 16-byte aligned, as every backend wants: HostBuffer is.
//! let q = HostBuffer::filled(16 * 576, Bf16::from_f32(0.1));
//! let idx = [0i32, 1, 2];
//! let (mut out, mut lse) = (HostBuffer::<Bf16>::zeroed(16 * 512), vec![0f32; 16]);
//! let mut args = SparseAttentionArgs::new(
//!     TensorRef::new(&q, &[1, 16, 576])?, &cache, TensorRef::new(&idx, &[1, 3])?,
//!     TensorMut::new(&mut out, &[1, 16, 512])?, TensorMut::new(&mut lse, &[1, 16])?);
//! let mut plan = h.plan_sparse_attention(&args, Stream::DEFAULT)?;
//! plan.run(&mut args, Stream::DEFAULT)?;
//! # Ok(()) }
//! ```
//!
//! # Linking
//! `spmla-sys` finds libspmla through `SPMLA_DIR` (its lib directory or install
//! prefix), `pkg-config spmla`, or `/usr/local` and `/usr`. This crate's own tests
//! and examples get an rpath to that directory; other programs need the library
//! on their loader path (an rpath of their own, `LD_LIBRARY_PATH`, or a system install).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod handle;
mod kv;
mod ops;
mod tensor;
mod types;

/// The raw FFI of `include/spmla.h` (the `spmla-sys` crate).
pub use spmla_sys as sys;

pub use error::{Error, Result, Status};
pub use handle::{
    abi_version, backends, device_info, version_number, version_string, BackendInfo, DeviceBuffer,
    DeviceInfo, Event, Handle, HandleOption, HostBuffer, Stream, Workspace,
};
pub use kv::{Fp8Flavor, KvArrangement, KvCache, KvCacheDesc, KvLayout};
pub use ops::{
    ExtraKv, IndexerLogitsArgs, IndexerLogitsPagedArgs, IndicesToSlotsArgs, Plan,
    SparseAttentionArgs, TopkPerRowArgs, WindowIndicesArgs,
};
pub use tensor::{TensorMut, TensorRef};
pub use types::{Bf16, DType, Element, Fp8E4m3fn, Fp8E4m3fnuz, Ue8m0};
