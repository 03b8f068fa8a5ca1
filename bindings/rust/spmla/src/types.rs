//! Element types: the dtype enum and the scalar types the library uses that
//! Rust's std does not have (bf16, the two FP8 E4M3 flavors, UE8M0 scales).
use spmla_sys as sys;

/// The element type of a tensor (`spmla_dtype_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// bfloat16 (1-8-7).
    Bf16,
    /// IEEE half precision.
    Fp16,
    /// IEEE single precision.
    Fp32,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 8-bit unsigned integer (also used for boolean masks).
    Uint8,
    /// OCP FP8 E4M3FN: bias 7, max 448, NaN S.1111.111, no infinities.
    Fp8E4m3fn,
    /// FP8 E4M3FNUZ (gfx942): bias 8, max 240, NaN 0x80 only.
    Fp8E4m3fnuz,
    /// UE8M0 power-of-two scale: 2^(e-127), 0xFF is NaN.
    Ue8m0,
}

impl DType {
    /// The C value.
    pub fn to_raw(self) -> sys::spmla_dtype_t {
        match self {
            DType::Bf16 => sys::SPMLA_DTYPE_BF16,
            DType::Fp16 => sys::SPMLA_DTYPE_FP16,
            DType::Fp32 => sys::SPMLA_DTYPE_FP32,
            DType::Int32 => sys::SPMLA_DTYPE_INT32,
            DType::Int64 => sys::SPMLA_DTYPE_INT64,
            DType::Uint8 => sys::SPMLA_DTYPE_UINT8,
            DType::Fp8E4m3fn => sys::SPMLA_DTYPE_FP8_E4M3FN,
            DType::Fp8E4m3fnuz => sys::SPMLA_DTYPE_FP8_E4M3FNUZ,
            DType::Ue8m0 => sys::SPMLA_DTYPE_UE8M0,
        }
    }

    /// The dtype of a C value, `None` for `SPMLA_DTYPE_INVALID` or an unknown value.
    pub fn from_raw(raw: sys::spmla_dtype_t) -> Option<DType> {
        Some(match raw {
            sys::SPMLA_DTYPE_BF16 => DType::Bf16,
            sys::SPMLA_DTYPE_FP16 => DType::Fp16,
            sys::SPMLA_DTYPE_FP32 => DType::Fp32,
            sys::SPMLA_DTYPE_INT32 => DType::Int32,
            sys::SPMLA_DTYPE_INT64 => DType::Int64,
            sys::SPMLA_DTYPE_UINT8 => DType::Uint8,
            sys::SPMLA_DTYPE_FP8_E4M3FN => DType::Fp8E4m3fn,
            sys::SPMLA_DTYPE_FP8_E4M3FNUZ => DType::Fp8E4m3fnuz,
            sys::SPMLA_DTYPE_UE8M0 => DType::Ue8m0,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Fp32 | DType::Int32 => 4,
            DType::Int64 => 8,
            DType::Bf16 | DType::Fp16 => 2,
            DType::Uint8 | DType::Fp8E4m3fn | DType::Fp8E4m3fnuz | DType::Ue8m0 => 1,
        }
    }

    /// The library's name of the dtype (`"bf16"`, `"fp8_e4m3fn"`, ...).
    pub fn name(self) -> &'static str {
        // SAFETY: static string, never NULL.
        unsafe { crate::error::static_str(sys::spmla_dtype_name(self.to_raw())) }
    }
}

/// A bfloat16 value, stored as its bits.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bf16(pub u16);

impl Bf16 {
    /// Rounds an `f32` to the nearest bf16 (ties to even); NaN stays NaN.
    pub fn from_f32(x: f32) -> Bf16 {
        let bits = x.to_bits();
        if x.is_nan() {
            return Bf16(((bits >> 16) as u16) | 0x0040);
        }
        let bias = 0x7FFF + ((bits >> 16) & 1);
        Bf16((bits.wrapping_add(bias) >> 16) as u16)
    }

    /// The exact `f32` value.
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

impl From<f32> for Bf16 {
    fn from(x: f32) -> Bf16 {
        Bf16::from_f32(x)
    }
}

impl From<Bf16> for f32 {
    fn from(x: Bf16) -> f32 {
        x.to_f32()
    }
}

/// Rounds to the nearest integer, ties to even (`f64::round_ties_even` needs Rust 1.77).
fn round_half_even(x: f64) -> f64 {
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        x.round()
    }
}

/// floor(log2(v)) for a positive, normal f64.
fn exponent_of(v: f64) -> i32 {
    ((v.to_bits() >> 52) & 0x7FF) as i32 - 1023
}

/// Encodes |x| (finite, not NaN) into E4M3 with the given exponent bias and
/// largest exponent field / mantissa of the biggest finite value, rounding to
/// nearest even and saturating. Returns the 7 magnitude bits.
fn e4m3_magnitude(a: f64, bias: i32, max_finite: f64) -> u8 {
    if a >= max_finite {
        return encode_e4m3_exact(max_finite, bias);
    }
    let emin = 1 - bias;
    let mut e = exponent_of(a);
    if e < emin {
        e = emin;
    }
    // Quantum of the binade: 3 mantissa bits.
    let q = (2.0f64).powi(e - 3);
    let m = round_half_even(a / q);
    let v = m * q;
    if v >= max_finite {
        return encode_e4m3_exact(max_finite, bias);
    }
    encode_e4m3_exact(v, bias)
}

/// Bits of a value exactly representable in E4M3 with the given bias.
fn encode_e4m3_exact(v: f64, bias: i32) -> u8 {
    if v == 0.0 {
        return 0;
    }
    let emin = 1 - bias;
    let e = exponent_of(v);
    if e < emin {
        // subnormal: v = m * 2^(emin - 3)
        let m = (v / (2.0f64).powi(emin - 3)) as u8;
        return m & 7;
    }
    let m = ((v / (2.0f64).powi(e) - 1.0) * 8.0) as u8;
    (((e + bias) as u8) << 3) | (m & 7)
}

/// Decodes the 7 magnitude bits of an E4M3 value with the given bias (no NaN check).
fn e4m3_decode_magnitude(bits: u8, bias: i32) -> f32 {
    let e = ((bits >> 3) & 0xF) as i32;
    let m = (bits & 7) as f32;
    if e == 0 {
        m * (2.0f32).powi(1 - bias - 3)
    } else {
        (1.0 + m / 8.0) * (2.0f32).powi(e - bias)
    }
}

/// An OCP FP8 E4M3FN value (NVIDIA, gfx950), stored as its byte.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fp8E4m3fn(pub u8);

impl Fp8E4m3fn {
    /// Largest finite value, 448.
    pub const MAX: f32 = 448.0;

    /// Rounds to nearest even, saturating to ±448 (infinities too); NaN gives NaN.
    pub fn from_f32(x: f32) -> Fp8E4m3fn {
        if x.is_nan() {
            return Fp8E4m3fn(0x7F | if x.is_sign_negative() { 0x80 } else { 0 });
        }
        let sign = if x.is_sign_negative() { 0x80 } else { 0 };
        Fp8E4m3fn(sign | e4m3_magnitude((x as f64).abs(), 7, 448.0))
    }

    /// The exact value (NaN for S.1111.111).
    pub fn to_f32(self) -> f32 {
        if self.0 & 0x7F == 0x7F {
            return f32::NAN;
        }
        let v = e4m3_decode_magnitude(self.0 & 0x7F, 7);
        if self.0 & 0x80 != 0 {
            -v
        } else {
            v
        }
    }
}

/// An FP8 E4M3FNUZ value (gfx942), stored as its byte.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fp8E4m3fnuz(pub u8);

impl Fp8E4m3fnuz {
    /// Largest finite value, 240.
    pub const MAX: f32 = 240.0;

    /// Rounds to nearest even, saturating to ±240 (infinities too); NaN gives
    /// 0x80; zero of either sign gives 0x00.
    pub fn from_f32(x: f32) -> Fp8E4m3fnuz {
        if x.is_nan() {
            return Fp8E4m3fnuz(0x80);
        }
        let mag = e4m3_magnitude((x as f64).abs(), 8, 240.0);
        if mag == 0 {
            return Fp8E4m3fnuz(0);
        }
        Fp8E4m3fnuz(mag | if x.is_sign_negative() { 0x80 } else { 0 })
    }

    /// The exact value (NaN for 0x80).
    pub fn to_f32(self) -> f32 {
        if self.0 == 0x80 {
            return f32::NAN;
        }
        let v = e4m3_decode_magnitude(self.0 & 0x7F, 8);
        if self.0 & 0x80 != 0 {
            -v
        } else {
            v
        }
    }
}

/// A UE8M0 scale, 2^(e-127), stored as its exponent byte (0xFF is NaN).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ue8m0(pub u8);

impl Ue8m0 {
    /// The value 2^(e-127) (NaN for 0xFF).
    pub fn to_f32(self) -> f32 {
        if self.0 == 0xFF {
            return f32::NAN;
        }
        (2.0f64).powi(self.0 as i32 - 127) as f32
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type whose slices can be viewed as spmla tensors of one dtype.
///
/// Implemented for `f32`, `i32`, `i64`, `u8`, [`Bf16`], [`Fp8E4m3fn`],
/// [`Fp8E4m3fnuz`] and [`Ue8m0`]; sealed (its size must equal the dtype's).
/// For other cases (e.g. fp16 bits, or FP8 bytes held as `u8`) use
/// [`crate::TensorRef::from_bytes`].
pub trait Element: Copy + sealed::Sealed + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = $d;
        }
    };
}
element!(f32, DType::Fp32);
element!(i32, DType::Int32);
element!(i64, DType::Int64);
element!(u8, DType::Uint8);
element!(Bf16, DType::Bf16);
element!(Fp8E4m3fn, DType::Fp8E4m3fn);
element!(Fp8E4m3fnuz, DType::Fp8E4m3fnuz);
element!(Ue8m0, DType::Ue8m0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(Bf16::from_f32(1.0).0, 0x3F80);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa (1.0) wins.
        assert_eq!(Bf16::from_f32(1.0 + 1.0 / 256.0).0, 0x3F80);
        // 1 + 3·2^-8 ties between 1+2^-7 (odd) and 1+2^-6 (even).
        assert_eq!(Bf16::from_f32(1.0 + 3.0 / 256.0).0, 0x3F82);
        assert!(Bf16::from_f32(f32::NAN).to_f32().is_nan());
        assert_eq!(Bf16::from_f32(-2.5).to_f32(), -2.5);
    }

    #[test]
    fn fp8_e4m3fn_codes_round_trip() {
        for b in 0u16..256 {
            let v = Fp8E4m3fn(b as u8);
            let x = v.to_f32();
            if x.is_nan() {
                assert_eq!(b & 0x7F, 0x7F);
                continue;
            }
            let back = Fp8E4m3fn::from_f32(x);
            assert_eq!(back.0, b as u8, "code {b:#x} value {x}");
        }
        assert_eq!(Fp8E4m3fn(0x7E).to_f32(), 448.0);
        assert_eq!(Fp8E4m3fn(0x01).to_f32(), 2.0f32.powi(-9));
        assert_eq!(Fp8E4m3fn::from_f32(1e6).0, 0x7E);
        assert_eq!(Fp8E4m3fn::from_f32(-f32::INFINITY).0, 0xFE);
        // 1.0625 is halfway between 1.0 (mantissa 0) and 1.125 (mantissa 1): even wins.
        assert_eq!(Fp8E4m3fn::from_f32(1.0625).0, 0x38);
        assert_eq!(Fp8E4m3fn::from_f32(1.1875).0, 0x3A);
        // Half the smallest subnormal rounds to zero; a bit more rounds up.
        assert_eq!(Fp8E4m3fn::from_f32(2.0f32.powi(-10)).0, 0x00);
        assert_eq!(Fp8E4m3fn::from_f32(2.0f32.powi(-10) * 1.01).0, 0x01);
    }

    #[test]
    fn fp8_e4m3fnuz_codes_round_trip() {
        for b in 0u16..256 {
            let v = Fp8E4m3fnuz(b as u8);
            let x = v.to_f32();
            if b == 0x80 {
                assert!(x.is_nan());
                continue;
            }
            assert!(!x.is_nan());
            assert_eq!(Fp8E4m3fnuz::from_f32(x).0, b as u8, "code {b:#x} value {x}");
        }
        assert_eq!(Fp8E4m3fnuz(0x7F).to_f32(), 240.0);
        assert_eq!(Fp8E4m3fnuz::from_f32(-0.0).0, 0x00);
        assert_eq!(Fp8E4m3fnuz::from_f32(f32::NAN).0, 0x80);
        assert_eq!(Fp8E4m3fnuz::from_f32(-1000.0).0, 0xFF);
    }

    #[test]
    fn ue8m0_values() {
        assert_eq!(Ue8m0(127).to_f32(), 1.0);
        assert_eq!(Ue8m0(120).to_f32(), 2.0f32.powi(-7));
        assert!(Ue8m0(255).to_f32().is_nan());
    }
}
