#!/usr/bin/env python3
"""Finds memory operands that read uniform registers their kernel never writes.

Reads `cuobjdump -sass` output (a file, or stdin) and, per function, reports every load/store
whose shared-memory offset (`[R10+UR4]`) or memory descriptor (`desc[UR4]`, a 64-bit pair) names
a uniform register that no instruction of the function writes. ptxas 13.0.88 emitted exactly
that for the sm90ws BF16 producer once it copied with an L2 policy
(`LDGSTS.E.BYPASS.LTC256B.128 [R33+UR0], desc[UR1][R10.64]`, UR0..UR2 never set), and the
kernel stopped with an illegal instruction on the H100 (session 10). Exit status 1 if any is
found; scripts/gpu-check runs it on the CUDA plugin before the GPU tests.

With --load-use N it reports instead (exit status 0), per function, every global load whose
result is read within N instructions of straight-line code: the warp then waits for the load
there, which a profile shows as long-scoreboard stalls on the reader. Session 10 found two such
waits in the Hopper kernels by ncu (a flag OR-ed into a loaded byte, an index tested right after
its load); this listing shows them without a GPU. An epilogue's single load is harmless; one
inside a loop over tiles is what to look for.

A register counts as written when it is an instruction's first operand (every SASS instruction
that writes puts its destination first; stores and barriers name no uniform register there),
with `.64` writing the pair and `.128` four. This is a heuristic over the text, not a
disassembler: it can miss a bad read, it should not invent one.
"""
import argparse
import collections
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


def functions(lines):
    """Yields (function name, [(address, opcode, operands), ...]) per function of the listing."""
    func, insns = None, []
    for line in lines:
        m = FUNC.match(line)
        if m:
            if func is not None:
                yield func, insns
            func, insns = m.group(1), []
            continue
        m = INSN.match(line)
        if m and func is not None:
            insns.append((line.split("*/")[0].strip().strip("/*"), m.group(1), m.group(2)))
    if func is not None:
        yield func, insns


def check(lines):
    """Yields (function, address, instruction, registers never written)."""
    for func, insns in functions(lines):
        writes, reads = set(), []
        for addr, opcode, operands in insns:
            w = UR.fullmatch(operands.split(",")[0].strip())
            if w and not opcode.startswith(("ST", "RED", "ATOM")):
                base = int(w.group(1))
                writes.update(range(base, base + widths(opcode)))
            regs = set()
            for d in DESC.finditer(operands):
                regs.update({int(d.group(1)), int(d.group(1)) + 1})
            for o in OFFSET.finditer(operands):
                regs.add(int(o.group(1)))
            if regs:
                reads.append((addr, f"{opcode} {operands}", regs))
        for addr, text, regs in reads:  # a register may be written after the read in program order
            missing = sorted(r for r in regs if r not in writes)
            if missing:
                yield func, addr, text, missing


def reg_set(token, width):
    m = re.fullmatch(r"R(\d+)", token)
    return set(range(int(m.group(1)), int(m.group(1)) + width)) if m else set()


def load_uses(lines, window):
    """Yields (function, load address, distance, load, first reader) for global loads read within
    `window` instructions of straight-line code (a branch, barrier or exit ends the search)."""
    for func, insns in functions(lines):
        for i, (addr, opcode, operands) in enumerate(insns):
            if not opcode.startswith("LDG"):
                continue
            dst = reg_set(operands.split(",")[0].strip(), widths(opcode))
            for j in range(i + 1, min(i + 1 + window, len(insns))):
                _, op2, ops2 = insns[j]
                if op2.startswith(("BRA", "EXIT", "BSYNC", "WARPSYNC", "BAR", "RET", "CALL")):
                    break
                parts = [x.strip() for x in ops2.split(",")]
                sources = parts if op2.startswith(("ST", "RED", "ATOM")) else parts[1:]
                read = set()
                for x in sources:
                    for m in re.finditer(r"\bR(\d+)(\.64)?\b", x):
                        read.add(int(m.group(1)))
                        if m.group(2):
                            read.add(int(m.group(1)) + 1)
                if read & dst:
                    yield func, addr, j - i, f"{opcode} {operands}", f"{op2} {ops2}"
                    break
                if reg_set(parts[0], widths(op2)) & dst:
                    break  # overwritten before any read


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sass", nargs="?", help="cuobjdump -sass output (default: stdin)")
    ap.add_argument("--load-use", type=int, metavar="N", help="list global loads read within N instructions")
    ap.add_argument("--function", default="", help="with --load-use: list the pairs of functions containing this")
    a = ap.parse_args()
    src = open(a.sass) if a.sass else sys.stdin
    if a.load_use:
        per = collections.Counter()
        rows = []
        for func, addr, dist, load, reader in load_uses(src, a.load_use):
            per[func] += 1
            if a.function and a.function in func:
                rows.append(f"  {func[:60]} @{addr} +{dist}: {load[:60]}  ->  {reader[:70]}")
        print(f"global loads read within {a.load_use} instructions, per function:")
        for func, n in sorted(per.items()):
            print(f"  {n:4d}  {func}")
        print("\n".join(rows))
        return 0
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
