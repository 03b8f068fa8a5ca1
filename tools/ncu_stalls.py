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
    start = raw.find('"#') if '"#' in raw else raw.find('"Address"')
    if start < 0:
        start = raw.find('"Source"')
    if start < 0:
        print("ncu_stalls: no CSV header found (was --page source --csv given?)")
        print(raw[:2000])
        return 1
    rows = list(csv.reader(io.StringIO(raw[start:])))
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    c_src = pick(header, "source")
    c_addr = pick(header, "address") if pick(header, "address") is not None else pick(header, "#")
    c_all = pick(header, "stall", "all")
    c_not = pick(header, "stall", "not")
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
    print(f"\ntop {a.top} instructions (all samples %, not-issued %, executed, address, SASS; previous opcode):")
    for i in order[:a.top]:
        r = body[i]
        prev = opcode(body[i - 1][c_src]) if i > 0 else ""
        ni = number(r[c_not]) / total * 100 if c_not is not None else 0.0
        ex = r[c_exec] if c_exec is not None else ""
        addr = r[c_addr] if c_addr is not None else str(i)
        print(f"  {number(r[c_all]) / total * 100:6.2f} {ni:6.2f} {ex:>12s} {addr:>8s}  {r[c_src].strip()[:90]}  | {prev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
