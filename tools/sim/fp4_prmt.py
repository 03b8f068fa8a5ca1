#!/usr/bin/env python3
"""The Hopper kernels' E2M1 decode (prmt byte tables) against SPEC's E2M1 values, on every code.

backends/cuda/sm90/attention_sm90.cuh, dequant_fp4x8_bf16: 8 E2M1 codes of a 32-bit word (low
nibble first) become 8 bf16 through two byte tables indexed by the codes' magnitudes (PTX prmt),
the sign bits OR-ed into the high bytes, then one bf16x2 multiply by the unit's E4M3 scale. This
script replays those instructions bit for bit (prmt's byte selection modelled from the PTX ISA)
and requires:
  1. every code in every one of the 8 positions (and random words) decodes to the bf16 bits of
     SPEC's E2M1 value (0, 0.5, 1, 1.5, 2, 3, 4, 6, signed; code 8 is -0);
  2. for every code and every E4M3FN scale byte, the exact product is a bf16 value, so the bf16
     multiply equals the fp32 product rounded to bf16 (what the CPU reference computes).
The GPU tier checks the kernel itself against the CPU reference; this pins the tables and the
selector constants, which a typo would break for a few codes only.

  python3 tools/sim/fp4_prmt.py [--words 20000] [--seed 1]
"""
import argparse
import random
import struct
import sys

E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
K_HI0, K_HI1, K_LO0, K_LO1 = 0x3F3F3F00, 0x40404040, 0xC0800000, 0xC0804000
M32 = 0xFFFFFFFF


def prmt(a, b, sel):
    """PTX prmt.b32 (default mode): byte i of the result is byte (sel nibble i & 7) of {b, a};
    a nibble with bit 3 set replicates that byte's sign bit."""
    src = (a & M32) | ((b & M32) << 32)
    out = 0
    for i in range(4):
        n = (sel >> (4 * i)) & 0xF
        byte = (src >> (8 * (n & 7))) & 0xFF
        if n & 8:
            byte = 0xFF if byte & 0x80 else 0x00
        out |= byte << (8 * i)
    return out


def kernel_codes_bf16(w):
    """The kernel's 8 bf16 bit patterns for word w, before the scale."""
    m = w & 0x77777777
    m2 = m >> 16
    w4 = (w << 4) & M32
    hi_a = prmt(K_HI0, K_HI1, m) | (prmt(w4, w, 0x5140) & 0x80808080)
    hi_b = prmt(K_HI0, K_HI1, m2) | (prmt(w4, w, 0x7362) & 0x80808080)
    lo_a, lo_b = prmt(K_LO0, K_LO1, m), prmt(K_LO0, K_LO1, m2)
    pairs = [prmt(lo_a, hi_a, 0x5140), prmt(lo_a, hi_a, 0x7362), prmt(lo_b, hi_b, 0x5140), prmt(lo_b, hi_b, 0x7362)]
    return [(p >> (16 * h)) & 0xFFFF for p in pairs for h in (0, 1)]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bf16_bits_exact(x):
    """The bf16 bits of x, which must be exactly representable (else None)."""
    b = f32_bits(x)
    return b >> 16 if b & 0xFFFF == 0 else None


def spec_code_bits(code):
    v = E2M1[code & 7]
    return bf16_bits_exact(-v if code & 8 else v)


def e4m3fn(b):
    """SPEC's E4M3FN value of byte b (NaN for S.1111.111)."""
    s, e, m = b >> 7, (b >> 3) & 0xF, b & 7
    if e == 0xF and m == 7:
        return float("nan")
    v = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
    return -v if s else v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    failures = 0

    words = [rng.getrandbits(32) for _ in range(args.words)]
    for pos in range(8):  # every code at every position, the others random
        for code in range(16):
            base = rng.getrandbits(32) & ~(0xF << (4 * pos))
            words.append(base | (code << (4 * pos)))
    words += [0, M32, 0x88888888, 0x77777777, 0x01234567, 0x89ABCDEF, 0xFEDCBA98]
    for w in words:
        got = kernel_codes_bf16(w)
        want = [spec_code_bits((w >> (4 * i)) & 0xF) for i in range(8)]
        if got != want:
            failures += 1
            if failures <= 5:
                print(f"word {w:#010x}: kernel {[hex(g) for g in got]} != SPEC {[hex(x) for x in want]}")

    inexact = 0
    for code in range(16):
        for sb in range(256):
            s = e4m3fn(sb)
            if s != s:
                continue  # NaN scale: NaN either way
            v = E2M1[code & 7] * (-1 if code & 8 else 1)
            if bf16_bits_exact(s) is None or bf16_bits_exact(v * s) is None:
                inexact += 1
                if inexact <= 5:
                    print(f"code {code} scale byte {sb:#04x}: product {v * s!r} is not a bf16 value")
    if failures or inexact:
        print(f"FAIL: {failures} words decoded wrongly, {inexact} products not exact in bf16")
        return 1
    print(f"ok: {len(words)} words (every code at every position) decode to SPEC's E2M1 bf16 bits; "
          f"all 16 x 254 non-NaN code x E4M3FN-scale products are exact in bf16")
    return 0


if __name__ == "__main__":
    sys.exit(main())
