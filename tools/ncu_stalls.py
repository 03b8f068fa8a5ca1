#!/usr/bin/env python3
"""Summarise ncu's per-instruction warp-stall samples (a kernel's source page as CSV).

Input: the output of
  ncu --section SourceCounters --page source --print-source sass --csv -k <kernel> -c 1 <program>
(one kernel). Prints where the sampled warps were, so that a latency-bound kernel's waits can be
told apart (mbarrier waits, named barriers, wgmma waits, global loads, shared-memory traffic):
  * the share of samples per SASS opcode (the first word of the instruction, predicate removed),
  * the instructions with the most samples, with their addresses and their neighbours' opcodes.
Column names are matched loosely (ncu versions differ); the script says which it used.

  python3 tools/ncu_stalls.py source.csv [--top 40]
"""
import argparse
import collections
import csv
import io
import re
import sys


def pick(header, *needles):
    """The first column whose name contains every needle (case-insensitive)."""
    for i, h in enumerate(header):
        low = h.lower()
        if all(n.lower() in low for n in needles):
            return i
    return None


def first(*cols):
    """The first of these column indices that exists."""
    return next((c for c in cols if c is not None), None)


def number(s):
    try:
        return float(str(s).replace(",", ""))
    except ValueError:
        return 0.0


def opcode(sass):
    text = re.sub(r"^@!?U?P[T0-9]+\s+", "", sass.strip())  # predicate guard
    return text.split(" ")[0].rstrip(";") if text else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    raw = open(a.csv, encoding="utf-8", errors="replace").read()
    # ncu prints its own log lines before the CSV: start at the header row.
    # The header row is the first line that names a Source or Address column ('"# Address"' in
    # some versions, '"Address","Source","# Samples",...' in ncu 2025); start at that line.
    start = -1
    for key in ('"# Address"', '"Address"', '"Source"', '"#'):
        at = raw.find(key)
        if at >= 0:
            start = raw.rfind("\n", 0, at) + 1
            break
    if start < 0:
        print("ncu_stalls: no CSV header found (was --page source --csv given?)")
        print(raw[:2000])
        return 1
    rows = list(csv.reader(io.StringIO(raw[start:])))
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    c_src = pick(header, "source")
    c_addr = pick(header, "address") if pick(header, "address") is not None else pick(header, "#")
    c_all = first(pick(header, "# samples"), pick(header, "stall sampling", "all samples"), pick(header, "samples"))
    c_not = first(pick(header, "stall sampling", "not-issued"), pick(header, "samples", "not issued"))
    # Per-reason columns (ncu 2025: stall_long_sb, stall_barrier, ...; "(Not Issued)" twins left out).
    reasons = [i for i, h in enumerate(header) if h.startswith("stall_") and "not issued" not in h.lower()]
    c_exec = pick(header, "instructions executed")
    print(f"ncu_stalls: {len(body)} instructions; columns used: source={header[c_src] if c_src is not None else None!r} "
          f"all={header[c_all] if c_all is not None else None!r} not-issued={header[c_not] if c_not is not None else None!r}")
    if c_src is None or c_all is None:
        print("ncu_stalls: columns missing; header was:", header)
        return 1
    total = sum(number(r[c_all]) for r in body) or 1.0
    by_op = collections.Counter()
    for r in body:
        by_op[opcode(r[c_src])] += number(r[c_all])
    print(f"\nsamples per opcode (of {int(total)}):")
    for op, n in by_op.most_common(25):
        print(f"  {op:28s} {n / total * 100:6.2f} %")
    order = sorted(range(len(body)), key=lambda i: -number(body[i][c_all]))
    if reasons:
        by_reason = collections.Counter()
        for r in body:
            for c in reasons:
                by_reason[header[c]] += number(r[c])
        rt = sum(by_reason.values()) or 1.0
        print("\nsamples per stall reason:")
        for name, n in by_reason.most_common(10):
            print(f"  {name:28s} {n / rt * 100:6.2f} %")
    print(f"\ntop {a.top} instructions (all samples %, not-issued %, executed, offset, SASS; previous opcode"
          + ("; main stall reasons" if reasons else "") + "):")
    for i in order[:a.top]:
        r = body[i]
        prev = opcode(body[i - 1][c_src]) if i > 0 else ""
        ni = number(r[c_not]) / total * 100 if c_not is not None else 0.0
        ex = r[c_exec] if c_exec is not None else ""
        addr = r[c_addr] if c_addr is not None else str(i)
        try:  # the offset in the function, as cuobjdump -sass prints it (ncu may give absolute addresses)
            addr = f"{int(addr, 16) - int(body[0][c_addr], 16):04x}"
        except (TypeError, ValueError, IndexError):
            pass
        why = ""
        if reasons:
            n_all = number(r[c_all]) or 1.0
            top = sorted(reasons, key=lambda c: -number(r[c]))[:2]
            why = "; " + ", ".join(f"{header[c][6:]} {number(r[c]) / n_all * 100:.0f}%" for c in top if number(r[c]) > 0)
        print(f"  {number(r[c_all]) / total * 100:6.2f} {ni:6.2f} {ex:>12s} {addr:>8s}  {r[c_src].strip()[:90]}  | {prev}{why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
