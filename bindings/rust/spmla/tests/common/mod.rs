//! Test helpers: a small deterministic RNG and an independent reference of the
//! cache formats and the operations, written from the operation contract
//! (docs/SPEC.md), not from the library's sources.
#![allow(dead_code)]

use spmla::{Bf16, Fp8E4m3fn, Fp8E4m3fnuz, HostBuffer};

/// splitmix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bf16s(&mut self, n: usize, amp: f32) -> HostBuffer<Bf16> {
        let mut b = HostBuffer::zeroed(n);
        for x in b.iter_mut() {
            *x = Bf16::from_f32(self.uniform() * amp);
        }
        b
    }
}

/// ceil(log2(r)) for a positive normal f32, from its bits.
pub fn ceil_log2(r: f32) -> i32 {
    let bits = r.to_bits();
    let e = ((bits >> 23) & 0xFF) as i32 - 127;
    e + if bits & 0x7F_FFFF != 0 { 1 } else { 0 }
}

/// The power-of-two tile scale of docs/SPEC.md: 2^ceil(log2(max(amax / fp8_max, 1e-4))).
pub fn tile_scale(amax: f32, fp8_max: f32) -> f32 {
    let r = (amax / fp8_max).max(1e-4);
    2f32.powi(ceil_log2(r))
}

/// The 656 bytes of one DeepSeek-V3.2 "fp8_ds_mla" token (OCP E4M3FN), per docs/SPEC.md.
pub fn v32_encode(row: &[Bf16]) -> Vec<u8> {
    assert_eq!(row.len(), 576);
    let mut out = vec![0u8; 656];
    for t in 0..4 {
        let tile: Vec<f32> = row[t * 128..(t + 1) * 128]
            .iter()
            .map(|b| b.to_f32())
            .collect();
        let amax = tile.iter().fold(0f32, |m, x| m.max(x.abs()));
        let s = tile_scale(amax, 448.0);
        for (i, x) in tile.iter().enumerate() {
            out[t * 128 + i] = Fp8E4m3fn::from_f32(x / s).0;
        }
        out[512 + 4 * t..516 + 4 * t].copy_from_slice(&s.to_le_bytes());
    }
    for i in 0..64 {
        out[528 + 2 * i..530 + 2 * i].copy_from_slice(&row[512 + i].0.to_le_bytes());
    }
    out
}

/// The 576 dequantized values of one V3.2 token.
pub fn v32_decode(tok: &[u8]) -> Vec<f32> {
    let mut v = vec![0f32; 576];
    for t in 0..4 {
        let s = f32::from_le_bytes(tok[512 + 4 * t..516 + 4 * t].try_into().unwrap());
        for i in t * 128..(t + 1) * 128 {
            v[i] = Fp8E4m3fn(tok[i]).to_f32() * s;
        }
    }
    for i in 0..64 {
        v[512 + i] = Bf16(u16::from_le_bytes([tok[528 + 2 * i], tok[529 + 2 * i]])).to_f32();
    }
    v
}

/// Decodes an FP8 code of either flavor.
pub fn fp8(code: u8, fnuz: bool) -> f32 {
    if fnuz {
        Fp8E4m3fnuz(code).to_f32()
    } else {
        Fp8E4m3fn(code).to_f32()
    }
}

/// Reference sparse attention for one (token, head) over the given key rows
/// (each `D_qk` dequantized values, V = the first 512): (out[512], lse, max_logit).
pub fn attend(q: &[f32], keys: &[Vec<f32>], scale: f32, sink: Option<f32>) -> (Vec<f64>, f64, f64) {
    if keys.is_empty() {
        return (vec![0.0; 512], f64::INFINITY, f64::NEG_INFINITY);
    }
    let logits: Vec<f64> = keys
        .iter()
        .map(|k| {
            scale as f64
                * q.iter()
                    .zip(k)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
        })
        .collect();
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    let lse = m + sum.ln();
    let mut out = vec![0f64; 512];
    for (k, l) in keys.iter().zip(&logits) {
        let p = (l - lse).exp();
        for i in 0..512 {
            out[i] += p * k[i] as f64;
        }
    }
    if let Some(s) = sink {
        let f = 1.0 / (1.0 + (s as f64 - lse).exp());
        out.iter_mut().for_each(|x| *x *= f);
    }
    (out, lse, m)
}

/// ‖a − b‖ / ‖b‖ (0 if both are zero).
pub fn rel_l2(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}
