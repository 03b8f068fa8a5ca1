#!/usr/bin/env python3
"""ptx_entries.py — compare the kernels of two sets of PTX files, entry by entry.

A host-side refactor must leave every kernel's device code as it was. Usage:
    ptx_entries.py OLD.ptx[,OLD2.ptx...] NEW.ptx[,NEW2.ptx...] [--rename OLD_PREFIX=NEW_PREFIX ...]
Each `.entry` (and `.func`) body is compared after register and block-label numbers are normalised; --rename
maps mangled-name fragments (a kernel moved to another namespace). Prints entries only in one
set and entries whose bodies differ; exit 1 if any body differs or an old entry is gone.
"""
import re
import sys


def entries(paths, renames):
    out = {}
    for path in paths:
        text = open(path).read()
        for a, b in renames:
            text = text.replace(a, b)
        for m in re.finditer(r"^\.(?:visible |weak )?\.?(entry|func)\s+(?:\([^)]*\)\s*)?([\w$]+)", text, re.M):
            start = text.index("{", m.end())
            depth, i = 0, start
            while True:
                c = text[i]
                depth += c == "{"
                depth -= c == "}"
                i += 1
                if depth == 0:
                    break
            body = re.sub(r"%(r|rd|f|fd|p|rs|h|hh)[0-9]+", r"%\1", text[m.end():i])
            body = re.sub(r"\$L__BB[0-9]+_", "$L__BB_", body)  # block labels number the functions of a file
            out[m.group(2)] = body
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--rename")]
    renames = []
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--rename":
            old, new = argv[i + 1].split("=", 1)
            renames.append((old, new))
            args.remove(argv[i + 1])
    old = entries(args[0].split(","), renames)
    new = entries(args[1].split(","), [])
    bad = 0
    for name in sorted(set(old) | set(new)):
        if name not in new:
            print("only old:", name)
            bad += 1
        elif name not in old:
            print("only new:", name)
        elif old[name] != new[name]:
            print("DIFFERS: ", name)
            bad += 1
    same = sum(1 for n in old if n in new and old[n] == new[n])
    print(f"{same} identical, {bad} gone or different, {len(set(new) - set(old))} new")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
