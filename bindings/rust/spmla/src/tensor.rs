//! Tensor views: a dtype, a shape and strides (in elements) over memory the
//! view borrows (host slices) or merely points to (device memory, `unsafe`).
use std::marker::PhantomData;
use std::os::raw::c_void;

use spmla_sys as sys;

use crate::error::{Error, Result};
use crate::types::{DType, Element};

/// Builds a C tensor descriptor after checking rank and sizes. With `bound`
/// (the number of bytes the memory holds), it also checks that every element the
/// shape and strides reach lies inside it.
fn describe(
    data: *mut c_void,
    dtype: DType,
    shape: &[i64],
    strides: Option<&[i64]>,
    bound: Option<usize>,
) -> Result<sys::spmla_tensor_t> {
    let max = sys::SPMLA_MAX_DIMS as usize;
    if shape.len() > max {
        return Err(Error::invalid(format!(
            "tensor rank {} exceeds SPMLA_MAX_DIMS ({max})",
            shape.len()
        )));
    }
    if let Some(&d) = shape.iter().find(|&&d| d < 0) {
        return Err(Error::invalid(format!(
            "tensor shape {shape:?} has a negative size {d}"
        )));
    }
    let mut raw = sys::spmla_tensor_t {
        struct_size: std::mem::size_of::<sys::spmla_tensor_t>(),
        data,
        dtype: dtype.to_raw(),
        ndim: shape.len() as i32,
        shape: [0; sys::SPMLA_MAX_DIMS as usize],
        strides: [0; sys::SPMLA_MAX_DIMS as usize],
    };
    raw.shape[..shape.len()].copy_from_slice(shape);
    match strides {
        Some(s) => {
            if s.len() != shape.len() {
                return Err(Error::invalid(format!(
                    "tensor strides {s:?} do not match the rank of shape {shape:?}"
                )));
            }
            raw.strides[..s.len()].copy_from_slice(s);
        }
        None => {
            // Row-major contiguous.
            let mut acc: i64 = 1;
            for i in (0..shape.len()).rev() {
                raw.strides[i] = acc;
                acc = acc.checked_mul(shape[i].max(1)).ok_or_else(|| {
                    Error::invalid(format!("tensor shape {shape:?} overflows 64 bits"))
                })?;
            }
        }
    }
    if let Some(bytes) = bound {
        let numel = shape.iter().try_fold(1i64, |a, &d| a.checked_mul(d));
        let numel = numel
            .ok_or_else(|| Error::invalid(format!("tensor shape {shape:?} overflows 64 bits")))?;
        if numel > 0 {
            // Largest element offset the view reaches; negative strides are not
            // allowed on borrowed memory (the view would start before the slice).
            let mut last: i64 = 0;
            for i in 0..shape.len() {
                let st = raw.strides[i];
                if st < 0 {
                    return Err(Error::invalid(format!(
                        "tensor strides {:?}: negative strides are not allowed on a borrowed slice",
                        &raw.strides[..shape.len()]
                    )));
                }
                last = (shape[i] - 1)
                    .checked_mul(st)
                    .and_then(|x| x.checked_add(last))
                    .ok_or_else(|| Error::invalid("tensor strides overflow 64 bits"))?;
            }
            let need = (last as u128 + 1) * dtype.size() as u128;
            if need > bytes as u128 {
                return Err(Error::invalid(format!(
                    "tensor of shape {shape:?}, strides {:?} and dtype {} needs {need} bytes, \
                     the memory holds {bytes}",
                    &raw.strides[..shape.len()],
                    dtype.name()
                )));
            }
        }
    }
    Ok(raw)
}

/// A read-only tensor view (an input of an operation).
///
/// Made from a borrowed host slice ([`TensorRef::new`], [`TensorRef::strided`],
/// [`TensorRef::from_bytes`]), from a [`crate::DeviceBuffer`], or from a raw
/// device pointer ([`TensorRef::from_raw_parts`], `unsafe`). Plain data: it may
/// be shared between threads, like the C descriptors.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    raw: sys::spmla_tensor_t,
    _borrow: PhantomData<&'a [u8]>,
}

/// A writable tensor view (an output of an operation). Holds the exclusive borrow
/// of its memory for `'a`.
#[derive(Debug)]
pub struct TensorMut<'a> {
    raw: sys::spmla_tensor_t,
    _borrow: PhantomData<&'a mut [u8]>,
}

// SAFETY: the views are descriptors of memory they borrow like `&[T]` / `&mut [T]`
// would (the element types are plain data); the C library only reads descriptors.
unsafe impl Send for TensorRef<'_> {}
unsafe impl Sync for TensorRef<'_> {}
unsafe impl Send for TensorMut<'_> {}
unsafe impl Sync for TensorMut<'_> {}

impl<'a> TensorRef<'a> {
    /// A contiguous row-major view of `data` with the given shape; the slice must
    /// hold at least the product of the shape elements.
    pub fn new<T: Element>(data: &'a [T], shape: &[i64]) -> Result<TensorRef<'a>> {
        Self::strided(data, shape, None)
    }

    /// A view of `data` with the given shape and strides (in elements; `None` for
    /// row-major contiguous). Every element the view reaches must lie in the slice.
    pub fn strided<T: Element>(
        data: &'a [T],
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> Result<TensorRef<'a>> {
        let raw = describe(
            data.as_ptr() as *mut c_void,
            T::DTYPE,
            shape,
            strides,
            Some(std::mem::size_of_val(data)),
        )?;
        Ok(TensorRef {
            raw,
            _borrow: PhantomData,
        })
    }

    /// A view of raw bytes as elements of `dtype` (e.g. FP8 codes held as `u8`).
    pub fn from_bytes(
        data: &'a [u8],
        dtype: DType,
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> Result<TensorRef<'a>> {
        let raw = describe(
            data.as_ptr() as *mut c_void,
            dtype,
            shape,
            strides,
            Some(data.len()),
        )?;
        Ok(TensorRef {
            raw,
            _borrow: PhantomData,
        })
    }

    /// A view of memory the crate cannot see: a device pointer, or host memory
    /// owned elsewhere. `strides` `None` means row-major contiguous.
    ///
    /// # Safety
    /// `data` must point to memory on the device of the handle it is used with,
    /// valid for every element the shape and strides reach, for as long as `'a`,
    /// and not written by anyone while an operation reads it.
    pub unsafe fn from_raw_parts(
        data: *const c_void,
        dtype: DType,
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> Result<TensorRef<'a>> {
        let raw = describe(data as *mut c_void, dtype, shape, strides, None)?;
        Ok(TensorRef {
            raw,
            _borrow: PhantomData,
        })
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        DType::from_raw(self.raw.dtype).expect("a view always has a valid dtype")
    }

    /// The shape.
    pub fn shape(&self) -> &[i64] {
        &self.raw.shape[..self.raw.ndim as usize]
    }

    /// The strides, in elements.
    pub fn strides(&self) -> &[i64] {
        &self.raw.strides[..self.raw.ndim as usize]
    }

    /// The number of elements.
    pub fn numel(&self) -> i64 {
        self.shape().iter().product()
    }

    /// The data pointer.
    pub fn as_ptr(&self) -> *const c_void {
        self.raw.data
    }

    /// The C descriptor.
    pub fn as_raw(&self) -> &sys::spmla_tensor_t {
        &self.raw
    }
}

impl<'a> TensorMut<'a> {
    /// A contiguous row-major view of `data` with the given shape.
    pub fn new<T: Element>(data: &'a mut [T], shape: &[i64]) -> Result<TensorMut<'a>> {
        Self::strided(data, shape, None)
    }

    /// A view of `data` with the given shape and strides (in elements; `None` for
    /// row-major contiguous). Every element the view reaches must lie in the slice.
    pub fn strided<T: Element>(
        data: &'a mut [T],
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> Result<TensorMut<'a>> {
        let bytes = std::mem::size_of_val(data);
        let raw = describe(
            data.as_mut_ptr() as *mut c_void,
            T::DTYPE,
            shape,
            strides,
            Some(bytes),
        )?;
        Ok(TensorMut {
            raw,
            _borrow: PhantomData,
        })
    }

    /// A writable view of raw bytes as elements of `dtype`.
    pub fn from_bytes(
        data: &'a mut [u8],
        dtype: DType,
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> Result<TensorMut<'a>> {
        let bytes = data.len();
        let raw = describe(
            data.as_mut_ptr() as *mut c_void,
            dtype,
            shape,
            strides,
            Some(bytes),
        )?;
        Ok(TensorMut {
            raw,
            _borrow: PhantomData,
        })
    }

    /// A writable view of memory the crate cannot see (a device pointer).
    ///
    /// # Safety
    /// `data` must point to memory on the device of the handle it is used with,
    /// valid for every element the shape and strides reach, for as long as `'a`,
    /// and neither read nor written by anyone else while an operation writes it.
    pub unsafe fn from_raw_parts(
        data: *mut c_void,
        dtype: DType,
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> Result<TensorMut<'a>> {
        let raw = describe(data, dtype, shape, strides, None)?;
        Ok(TensorMut {
            raw,
            _borrow: PhantomData,
        })
    }

    /// A read-only view of the same memory, borrowing this one.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef {
            raw: self.raw,
            _borrow: PhantomData,
        }
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        DType::from_raw(self.raw.dtype).expect("a view always has a valid dtype")
    }

    /// The shape.
    pub fn shape(&self) -> &[i64] {
        &self.raw.shape[..self.raw.ndim as usize]
    }

    /// The strides, in elements.
    pub fn strides(&self) -> &[i64] {
        &self.raw.strides[..self.raw.ndim as usize]
    }

    /// The number of elements.
    pub fn numel(&self) -> i64 {
        self.shape().iter().product()
    }

    /// The data pointer.
    pub fn as_mut_ptr(&mut self) -> *mut c_void {
        self.raw.data
    }

    /// The C descriptor.
    pub fn as_raw(&self) -> &sys::spmla_tensor_t {
        &self.raw
    }
}
