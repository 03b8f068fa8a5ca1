#!/usr/bin/env python3
"""How well does the fast topk kernel's sample judge a row? A CPU model of its bound `lo`.

The CUDA fast kernel (backends/common/topk.cuh) keeps only the values whose key is >= `lo`, a bound
taken from a sample of 4 values per thread; a row it misjudges (fewer than k candidates, or more
than the candidate list holds) falls back to a slower path. Speed on iid data says nothing about
rows whose values are correlated along the columns, which real indexer logits may be. This script
replays the bound on such rows for several sample layouts and prints how often each falls back and
how many candidates it keeps. It models the 4096 x 32768, k = 2048 benchmark shape at 320 or 384
threads (the list holds `cap` pairs; 6352 with 3 blocks per SM).

  python3 tools/sim/topk_sample.py [--rows 200] [--threads 320] [--seed 1]

Layouts: strided (one vector per thread at even places, the kernel's), chunkN (chunks of N
consecutive vectors at even places: whole DRAM bursts for N >= 2). Bound: the target-th largest
sample key cut to 22 bits (in-block sample) or 16 bits (topk_sample_kernel, which samples 160
places per row since session 5: `--threads 160`). Needs numpy.
"""
import argparse

import numpy as np


def keys(x):
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return np.where(u & 0x80000000, (~u) & 0xFFFFFFFF, u | 0x80000000)


def bound(sample_keys, k, length, bits):
    ns = len(sample_keys)
    expect = k * ns / length
    target = int(np.ceil(expect + 4 * np.sqrt(expect) + 4))  # the kernel's 4-sigma target
    if target > ns:
        return 0
    t = int(np.sort(sample_keys)[::-1][target - 1])
    return (t >> (32 - bits)) << (32 - bits)


def places(nt, n4, run):
    t = np.arange(nt)
    if run == 1:
        return (t * n4) // nt
    chunks = nt // run
    return ((t // run) * n4) // chunks + t % run


def row(kind, rng, C):
    x = rng.standard_normal(C)
    col = np.arange(C) / C
    if kind == "trend3":  # values rising along the row
        x += 3.0 * col
    elif kind.startswith("blocks"):  # blocksS_L: offsets of sd S shared by runs of L columns
        s, l = kind[6:].split("_")
        x += np.repeat(rng.standard_normal(C // int(l)) * float(s), int(l))
    elif kind == "recent":  # the last 3 % of the columns hot
        x += np.where(col > 0.97, 3.0, 0.0)
    elif kind == "sorted":
        x = np.sort(x)
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--threads", type=int, default=320)
    ap.add_argument("--cols", type=int, default=32768)
    ap.add_argument("-k", type=int, default=2048)
    ap.add_argument("--cap", type=int, default=6352)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    n4 = a.cols // 4
    layouts = {"strided/22": (1, 22), "strided/16": (1, 16), "chunk2/22": (2, 22), "chunk8/22": (8, 22),
               "chunk32/22": (32, 22)}
    kinds = ["iid", "trend3", "blocks0.5_64", "blocks1_64", "blocks2_64", "blocks1_512", "recent", "sorted"]
    print(f"{a.rows} rows of {a.cols}, k = {a.k}, {a.threads} threads, cap {a.cap}: "
          "fallbacks (too few / too many) and mean candidates")
    print("%-13s" % "rows" + "".join("%-22s" % n for n in layouts))
    for kind in kinds:
        stats = {n: [0, 0, 0] for n in layouts}
        for _ in range(a.rows):
            x = row(kind, rng, a.cols)
            kk, v = keys(x), x.reshape(-1, 4)
            for n, (run, bits) in layouts.items():
                lo = bound(keys(v[places(a.threads, n4, run)].reshape(-1)), a.k, a.cols, bits)
                nc = int((kk >= lo).sum())
                stats[n][0] += nc < a.k
                stats[n][1] += nc > a.cap
                stats[n][2] += nc
        print("%-13s" % kind + "".join("%-22s" % ("%d/%d  %5.0f" % (lo_, hi, s / a.rows))
                                        for lo_, hi, s in stats.values()))


if __name__ == "__main__":
    main()
