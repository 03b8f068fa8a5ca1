//! Paged KV-cache descriptors (`spmla_kv_cache_t`).
use std::marker::PhantomData;
use std::os::raw::c_void;

use spmla_sys as sys;

use crate::error::{check, Error, Result};

/// How a cache stores one token (see the KV cache layouts of the operation contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvLayout {
    /// D bf16 values per token (D 576 or 512).
    Bf16,
    /// D fp8 values per token and one fp32 scale for the whole cache.
    Fp8PerTensor,
    /// DeepSeek-V3.2 "fp8_ds_mla": 656 bytes per token, D 576.
    V32Fp8,
    /// DeepSeek-V4: 576 data bytes plus 8 scale bytes per token, D 512.
    V4Fp8,
    /// The lightning indexer's cache: per page `block_size·D` fp8 bytes, then
    /// `block_size` fp32 scales (D 64 or 128).
    IndexerFp8,
    /// DeepSeek-V4.1 (ABI 1.2): 512 E4M3 values (all dims) and 16 UE8M0 scales, 528 bytes
    /// per token, D 512, in the given page arrangement.
    V41Fp8(KvArrangement),
    /// DeepSeek-V4.1 (ABI 1.2): 512 E2M1 values (two per byte) and 32 E4M3FN scales, 288
    /// bytes per token, D 512, in the given page arrangement (FP8 flavor E4M3FN).
    V41Fp4(KvArrangement),
}

/// How a page arranges its tokens' bytes (`spmla_kv_arrangement_t`, ABI 1.2). The V4.1
/// layouts exist in both and carry theirs; never guessed from sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvArrangement {
    /// Each token's data bytes, then its scale bytes (FlashMLA from 2026-09-30).
    PerToken,
    /// `block_size` data rows, then `block_size` scale rows; the page rounded up to a
    /// multiple of 512 bytes (FlashMLA of 2026-09-10).
    PageBlocked,
}

impl KvArrangement {
    /// The C value.
    pub fn to_raw(self) -> sys::spmla_kv_arrangement_t {
        match self {
            KvArrangement::PerToken => sys::SPMLA_KV_ARRANGEMENT_PER_TOKEN,
            KvArrangement::PageBlocked => sys::SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED,
        }
    }
}

impl KvLayout {
    /// The C value.
    pub fn to_raw(self) -> sys::spmla_kv_layout_t {
        match self {
            KvLayout::Bf16 => sys::SPMLA_KV_LAYOUT_BF16,
            KvLayout::Fp8PerTensor => sys::SPMLA_KV_LAYOUT_FP8_PER_TENSOR,
            KvLayout::V32Fp8 => sys::SPMLA_KV_LAYOUT_V32_FP8,
            KvLayout::V4Fp8 => sys::SPMLA_KV_LAYOUT_V4_FP8,
            KvLayout::IndexerFp8 => sys::SPMLA_KV_LAYOUT_INDEXER_FP8,
            KvLayout::V41Fp8(_) => sys::SPMLA_KV_LAYOUT_V41_FP8,
            KvLayout::V41Fp4(_) => sys::SPMLA_KV_LAYOUT_V41_FP4,
        }
    }

    /// The C arrangement of the descriptor: the V4.1 layouts' own, DEFAULT for the others.
    pub fn arrangement_raw(self) -> sys::spmla_kv_arrangement_t {
        match self {
            KvLayout::V41Fp8(a) | KvLayout::V41Fp4(a) => a.to_raw(),
            _ => sys::SPMLA_KV_ARRANGEMENT_DEFAULT,
        }
    }
}

/// The FP8 flavor of a cache. Always explicit: never guessed from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fp8Flavor {
    /// No FP8 (only for [`KvLayout::Bf16`]).
    None,
    /// OCP E4M3FN (NVIDIA, gfx950), max 448.
    E4m3fn,
    /// E4M3FNUZ (gfx942), max 240.
    E4m3fnuz,
}

impl Fp8Flavor {
    /// The C value.
    pub fn to_raw(self) -> sys::spmla_fp8_flavor_t {
        match self {
            Fp8Flavor::None => sys::SPMLA_FP8_NONE,
            Fp8Flavor::E4m3fn => sys::SPMLA_FP8_E4M3FN,
            Fp8Flavor::E4m3fnuz => sys::SPMLA_FP8_E4M3FNUZ,
        }
    }
}

/// The geometry of a paged cache, without its memory: `num_pages` pages of
/// `block_size` tokens; slot id = `page * block_size + offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvCacheDesc {
    /// Token layout.
    pub layout: KvLayout,
    /// FP8 flavor ([`Fp8Flavor::None`] only for [`KvLayout::Bf16`]).
    pub fp8_flavor: Fp8Flavor,
    /// D (576 or 512; 0 = the layout's own for V32/V4/V41); the indexer's Di for
    /// [`KvLayout::IndexerFp8`].
    pub head_dim: i32,
    /// Number of pages.
    pub num_pages: i64,
    /// Tokens per page, at least 1.
    pub block_size: i32,
    /// Bytes from one page to the next; 0 = packed ([`KvCacheDesc::page_bytes`]),
    /// otherwise at least that and a multiple of 16.
    pub page_stride_bytes: i64,
    /// For [`KvLayout::Fp8PerTensor`]: dequantized = fp8 · scale (> 0, finite).
    pub scale: f32,
}

impl KvCacheDesc {
    /// A descriptor with packed pages and scale 1.
    pub fn new(
        layout: KvLayout,
        fp8_flavor: Fp8Flavor,
        head_dim: i32,
        num_pages: i64,
        block_size: i32,
    ) -> KvCacheDesc {
        KvCacheDesc {
            layout,
            fp8_flavor,
            head_dim,
            num_pages,
            block_size,
            page_stride_bytes: 0,
            scale: 1.0,
        }
    }

    /// A bf16 cache of head dim `head_dim` (576 or 512).
    pub fn bf16(head_dim: i32, num_pages: i64, block_size: i32) -> KvCacheDesc {
        Self::new(
            KvLayout::Bf16,
            Fp8Flavor::None,
            head_dim,
            num_pages,
            block_size,
        )
    }

    /// A DeepSeek-V3.2 "fp8_ds_mla" cache (D 576) in OCP E4M3FN, FlashMLA's format.
    pub fn v32_fp8(num_pages: i64, block_size: i32) -> KvCacheDesc {
        Self::new(
            KvLayout::V32Fp8,
            Fp8Flavor::E4m3fn,
            576,
            num_pages,
            block_size,
        )
    }

    /// A DeepSeek-V4 cache (D 512) in OCP E4M3FN.
    pub fn v4_fp8(num_pages: i64, block_size: i32) -> KvCacheDesc {
        Self::new(
            KvLayout::V4Fp8,
            Fp8Flavor::E4m3fn,
            512,
            num_pages,
            block_size,
        )
    }

    /// A DeepSeek-V4.1 V41_FP8 cache (D 512) in OCP E4M3FN, in `arrangement`.
    pub fn v41_fp8(arrangement: KvArrangement, num_pages: i64, block_size: i32) -> KvCacheDesc {
        Self::new(
            KvLayout::V41Fp8(arrangement),
            Fp8Flavor::E4m3fn,
            512,
            num_pages,
            block_size,
        )
    }

    /// A DeepSeek-V4.1 V41_FP4 cache (D 512; E4M3FN scales), in `arrangement`.
    pub fn v41_fp4(arrangement: KvArrangement, num_pages: i64, block_size: i32) -> KvCacheDesc {
        Self::new(
            KvLayout::V41Fp4(arrangement),
            Fp8Flavor::E4m3fn,
            512,
            num_pages,
            block_size,
        )
    }

    /// An FP8 cache with one scale for the whole cache.
    pub fn fp8_per_tensor(
        head_dim: i32,
        flavor: Fp8Flavor,
        scale: f32,
        num_pages: i64,
        block_size: i32,
    ) -> KvCacheDesc {
        KvCacheDesc {
            scale,
            ..Self::new(
                KvLayout::Fp8PerTensor,
                flavor,
                head_dim,
                num_pages,
                block_size,
            )
        }
    }

    /// A lightning-indexer cache of Di `head_dim` (64 or 128).
    pub fn indexer_fp8(
        head_dim: i32,
        flavor: Fp8Flavor,
        num_pages: i64,
        block_size: i32,
    ) -> KvCacheDesc {
        Self::new(
            KvLayout::IndexerFp8,
            flavor,
            head_dim,
            num_pages,
            block_size,
        )
    }

    /// The same descriptor with another FP8 flavor.
    pub fn with_flavor(self, fp8_flavor: Fp8Flavor) -> KvCacheDesc {
        KvCacheDesc { fp8_flavor, ..self }
    }

    /// The same descriptor with a page stride in bytes (0 = packed).
    pub fn with_page_stride(self, page_stride_bytes: i64) -> KvCacheDesc {
        KvCacheDesc {
            page_stride_bytes,
            ..self
        }
    }

    /// Number of slots, `num_pages · block_size`.
    pub fn num_slots(&self) -> i64 {
        self.num_pages * self.block_size as i64
    }

    /// The C descriptor for memory at `data`.
    pub fn to_raw(&self, data: *mut c_void) -> sys::spmla_kv_cache_t {
        sys::spmla_kv_cache_t {
            struct_size: std::mem::size_of::<sys::spmla_kv_cache_t>(),
            data,
            layout: self.layout.to_raw(),
            fp8_flavor: self.fp8_flavor.to_raw(),
            head_dim: self.head_dim,
            num_pages: self.num_pages,
            block_size: self.block_size,
            page_stride_bytes: self.page_stride_bytes,
            scale: self.scale,
            reserved0: 0,
            arrangement: self.layout.arrangement_raw(),
            reserved1: 0,
        }
    }

    /// Bytes of one packed page (validates the descriptor in the library).
    pub fn page_bytes(&self) -> Result<usize> {
        let raw = self.to_raw(std::ptr::null_mut());
        let mut n = 0usize;
        // SAFETY: valid descriptor and output pointer.
        check(unsafe { sys::spmla_kv_cache_page_bytes(&raw, &mut n) })?;
        Ok(n)
    }

    /// Total bytes the cache spans: page stride · num_pages (validates too).
    pub fn size_bytes(&self) -> Result<usize> {
        let raw = self.to_raw(std::ptr::null_mut());
        let mut n = 0usize;
        // SAFETY: valid descriptor and output pointer.
        check(unsafe { sys::spmla_kv_cache_size_bytes(&raw, &mut n) })?;
        Ok(n)
    }
}

/// A paged KV cache: a [`KvCacheDesc`] over memory it holds exclusively for `'a`
/// (operations that write it, like [`crate::Handle::kv_cache_store`], take
/// `&mut KvCache`; readers take `&KvCache`).
#[derive(Debug)]
pub struct KvCache<'a> {
    raw: sys::spmla_kv_cache_t,
    desc: KvCacheDesc,
    _borrow: PhantomData<&'a mut [u8]>,
}

// SAFETY: a descriptor of memory borrowed like `&mut [u8]`; the library only reads it.
unsafe impl Send for KvCache<'_> {}
unsafe impl Sync for KvCache<'_> {}

impl<'a> KvCache<'a> {
    /// A cache over host memory (for the "cpu" backend). The slice must hold
    /// [`KvCacheDesc::size_bytes`] bytes and start 16-byte aligned (see
    /// [`crate::HostBuffer`], which is).
    pub fn new(data: &'a mut [u8], desc: KvCacheDesc) -> Result<KvCache<'a>> {
        let need = desc.size_bytes()?;
        if data.len() < need {
            return Err(Error::invalid(format!(
                "kv cache {desc:?} needs {need} bytes, the slice holds {}",
                data.len()
            )));
        }
        if data.as_ptr() as usize % 16 != 0 {
            return Err(Error::new(
                crate::Status::Misaligned,
                format!(
                    "spmla-rs: kv cache data {:p} is not 16-byte aligned",
                    data.as_ptr()
                ),
            ));
        }
        Ok(KvCache {
            raw: desc.to_raw(data.as_mut_ptr() as *mut c_void),
            desc,
            _borrow: PhantomData,
        })
    }

    /// A cache over memory the crate cannot see (device memory).
    ///
    /// # Safety
    /// `data` must point to at least [`KvCacheDesc::size_bytes`] bytes on the device
    /// of the handle it is used with, valid for `'a`, and not accessed by anyone
    /// else while an operation writes it.
    pub unsafe fn from_raw_parts(data: *mut c_void, desc: KvCacheDesc) -> Result<KvCache<'a>> {
        desc.size_bytes()?;
        Ok(KvCache {
            raw: desc.to_raw(data),
            desc,
            _borrow: PhantomData,
        })
    }

    /// The geometry.
    pub fn desc(&self) -> &KvCacheDesc {
        &self.desc
    }

    /// The C descriptor.
    pub fn as_raw(&self) -> &sys::spmla_kv_cache_t {
        &self.raw
    }
}
