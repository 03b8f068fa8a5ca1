#!/usr/bin/env python3
"""The sm90pair kernel's online softmax, step by step, against an exact softmax.

backends/cuda/sm90/attention_sm90_pair.cuh splits each pair of key tiles between two warpgroups:
WG0 owns tile A and value dims [0, dv/2), WG1 tile B and dims [dv/2, dv). The row maximum is
chained (WG0 publishes max(m, max S_A), WG1 combines it with max S_B and publishes the result,
WG0 rescales its P by the difference before handing it over), each warpgroup keeps its own row
sums, and P is rounded to bf16 where the kernel rounds it. This script replays exactly those
steps for one row (pure Python, small sizes: the algebra does not depend on them) over random
scores with masked keys, whole masked tiles and pairs, an odd number of tiles and a large
spread of scores, and requires the output and the log-sum-exp to match an exact softmax within
bf16's resolution. It checks the algebra of the hand-over (which maximum each rescale uses),
not the hardware; the GPU tier checks the kernel itself.

  python3 tools/sim/pair_softmax.py [--cases 400] [--seed 1]
"""
import argparse
import math
import random
import struct
import sys

NEG_INF = float("-inf")


def bf16(x):
    """x rounded to bfloat16 (round to nearest even), as a float."""
    if x == 0.0 or math.isinf(x) or math.isnan(x):
        return x
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", b))[0]


def rescale(m_old, m_new):
    # rescale_factor(): 1 while the row has seen no key, else exp2(m_old - m_new)
    return 1.0 if m_new == NEG_INF else 2.0 ** (m_old - m_new)


def kernel_row(scores, valid, v, sl2, bn):
    """The kernel's steps for one row. scores[k], valid[k], v[k][dv]; tiles of bn keys taken in
    pairs (A = 2i, B = 2i + 1; keys past the list are invalid). Returns (out[dv], lse)."""
    dv = len(v[0])
    half = dv // 2
    n = len(scores)
    ntiles = (n + bn - 1) // bn
    npairs = (ntiles + 1) // 2
    o0, o1 = [0.0] * half, [0.0] * half  # WG0: dims [0, half); WG1: [half, dv)
    m0 = m1 = NEG_INF                     # each warpgroup's running maximum (log2 units)
    l0 = l1 = 0.0                         # each warpgroup's row sum

    def tile(t):
        idx = [t * bn + j for j in range(bn)]
        s = [scores[k] * sl2 if k < n and valid[k] else NEG_INF for k in idx]
        return idx, s

    def softmax_to(o, l, m_old, m_new, s):
        """The kernel's softmax_to: O and the row sum moved to m_new, P = exp2(S - m_new)."""
        a = rescale(m_old, m_new)
        p = [0.0 if x == NEG_INF else 2.0 ** (x - m_new) for x in s]
        return [x * a for x in o], l * a + sum(p), p

    def pv(o, p_bf16, keys, d0):
        """O += P V over the keys, value dims [d0, d0 + half), P already rounded to bf16."""
        for j, k in enumerate(keys):
            if p_bf16[j] != 0.0:
                for d in range(half):
                    o[d] += p_bf16[j] * v[k][d0 + d]

    for pi in range(npairs):
        ia, sa = tile(2 * pi)
        ib, sb = tile(2 * pi + 1)
        # WG0: its maximum, P_A at that maximum, P_A V_A for its dims; sM <- its maximum.
        mn = max([m0] + sa)
        o0, l0, pa = softmax_to(o0, l0, m0, mn, sa)
        m0 = smax = mn
        pv(o0, [bf16(x) for x in pa], ia, 0)
        # WG1: the combined maximum, P_B, P_B V_B for its dims, P_B to S1; sM <- combined.
        mc = max([smax] + sb)
        o1, l1, pb = softmax_to(o1, l1, m1, mc, sb)
        m1 = smax = mc
        s1 = [bf16(x) for x in pb]
        pv(o1, s1, ib, half)
        # WG0: P_A rescaled to the combined maximum into S0; its O and sum rescaled; P_B V_B.
        beta = rescale(m0, smax)
        m0 = smax
        s0 = [bf16(x * beta) for x in pa]
        o0 = [x * beta for x in o0]
        l0 *= beta
        pv(o0, s1, ib, 0)
        # WG1: P_A V_A for its dims, from S0.
        pv(o1, s0, ia, half)
    assert m0 == m1, "both warpgroups end on the same maximum"
    l = l0 + l1
    if l == 0.0:
        return [0.0] * dv, NEG_INF  # no key: zeros, lse -inf (attn_row_stats' case)
    out = [x / l for x in o0 + o1]
    lse = (m0 + math.log2(l)) * math.log(2.0)
    return out, lse


def exact_row(scores, valid, v, scale):
    keys = [k for k in range(len(scores)) if valid[k]]
    dv = len(v[0])
    if not keys:
        return [0.0] * dv, NEG_INF
    z = [scores[k] * scale for k in keys]
    m = max(z)
    e = [math.exp(x - m) for x in z]
    s = sum(e)
    out = [sum(e[i] * v[k][d] for i, k in enumerate(keys)) / s for d in range(dv)]
    return out, m + math.log(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    bn, dv = 8, 8
    worst = 0.0
    for case in range(a.cases):
        n = rng.randint(0, 7 * bn)
        spread = rng.choice([0.5, 4.0, 40.0])
        scores = [rng.gauss(0.0, spread) for _ in range(n)]
        mode = rng.random()
        if mode < 0.2:
            valid = [True] * n
        elif mode < 0.4:  # whole tiles masked (the first pair among them at times)
            dead = {t for t in range((n + bn - 1) // bn) if rng.random() < 0.5}
            valid = [(k // bn) not in dead for k in range(n)]
        else:
            valid = [rng.random() < 0.7 for _ in range(n)]
        v = [[rng.uniform(-1.0, 1.0) for _ in range(dv)] for _ in range(max(n, 1))]
        scale = 0.7
        got, glse = kernel_row(scores, valid, v, scale * math.log2(math.e), bn)
        want, wlse = exact_row(scores, valid, v, scale)
        if wlse == NEG_INF:
            ok = all(x == 0.0 for x in got) and glse == NEG_INF
            err = 0.0 if ok else float("inf")
        else:
            err = max(abs(g - w) for g, w in zip(got, want))
            # The row sums are kept unrounded, so the lse is exact up to float64.
            if abs(glse - wlse) > 1e-9 * max(1.0, abs(wlse)):
                err = float("inf")
        worst = max(worst, err)
        if err > 1e-2:  # P in bf16 (8 significant bits), |v| <= 1
            print(f"case {case}: n {n}, spread {spread}: max error {err:.3g}")
            print(f"  kernel {got[:4]} lse {glse}\n  exact  {want[:4]} lse {wlse}")
            print("pair_softmax: FAILED")
            return 1
    print(f"pair_softmax: ok: {a.cases} rows, worst abs error {worst:.3g} (bf16 P)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
