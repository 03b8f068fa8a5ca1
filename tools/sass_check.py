#!/usr/bin/env python3
"""Finds memory operands that read uniform registers their kernel never writes.

Reads `cuobjdump -sass` output (a file, or stdin) and, per function, reports every load/store
whose shared-memory offset (`[R10+UR4]`) or memory descriptor (`desc[UR4]`, a 64-bit pair) names
a uniform register that no instruction of the function writes. ptxas 13.0.88 emitted exactly
that for the sm90ws BF16 producer once it copied with an L2 policy
(`LDGSTS.E.BYPASS.LTC256B.128 [R33+UR0], desc[UR1][R10.64]`, UR0..UR2 never set), and the
kernel stopped with an illegal instruction on the H100 (session 10). Exit status 1 if any is
found, so `scripts/kernel-resources --check` fails on it.

A register counts as written when it is an instruction's first operand (every SASS instruction
that writes puts its destination first; stores and barriers name no uniform register there),
with `.64` writing the pair and `.128` four. This is a heuristic over the text, not a
disassembler: it can miss a bad read, it should not invent one.
"""
import argparse
import re
import sys

FUNC = re.compile(r"^\s*Function\s*:\s*(\S+)")
INSN = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z0-9_.]+)\s*(.*?)\s*;")
UR = re.compile(r"\bUR(\d+)\b")
DESC = re.compile(r"desc\[UR(\d+)\]")
OFFSET = re.compile(r"\[[^\]]*\+UR(\d+)[^\]]*\]")


def widths(opcode):
    if ".128" in opcode:
        return 4
    if ".64" in opcode:
        return 2
    return 1


def check(lines):
    """Yields (function, address, instruction, registers never written)."""
    func, writes, reads = None, set(), []

    def flush():
        for addr, text, regs in reads:
            missing = sorted(r for r in regs if r not in writes)
            if missing:
                yield func, addr, text, missing

    for line in lines:
        m = FUNC.match(line)
        if m:
            if func is not None:
                yield from flush()
            func, writes, reads = m.group(1), set(), []
            continue
        m = INSN.match(line)
        if not m or func is None:
            continue
        opcode, operands = m.group(1), m.group(2)
        first = operands.split(",")[0].strip()
        w = UR.fullmatch(first)
        if w and not opcode.startswith(("ST", "RED", "ATOM")):
            base = int(w.group(1))
            writes.update(range(base, base + widths(opcode)))
        regs = set()
        for d in DESC.finditer(operands):
            regs.update({int(d.group(1)), int(d.group(1)) + 1})
        for o in OFFSET.finditer(operands):
            regs.add(int(o.group(1)))
        if regs:
            addr = line.split("*/")[0].strip().strip("/*")
            reads.append((addr, f"{opcode} {operands}", regs))
    if func is not None:
        yield from flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sass", nargs="?", help="cuobjdump -sass output (default: stdin)")
    a = ap.parse_args()
    src = open(a.sass) if a.sass else sys.stdin
    found = 0
    for func, addr, text, missing in check(src):
        found += 1
        regs = ", ".join(f"UR{r}" for r in missing)
        print(f"{func} @{addr}: {text}  <- {regs} never written in this function")
    if found:
        print(f"sass_check: {found} memory operand(s) read unwritten uniform registers", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
