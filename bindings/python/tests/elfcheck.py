"""Shared checks of the shared libraries spmla ships: RUNPATH/RPATH entries (pure-Python ELF
reader, readelf not needed) and a run with fake vendor runtimes planted in the working
directory. Used by test_rpath.py (the installed package) and test_wheel.py (the wheel)."""

import os
import pathlib
import shutil
import struct
import subprocess
import sys
import textwrap

DT_RPATH, DT_RUNPATH = 15, 29
SHT_DYNAMIC = 6


def search_paths(path):
    """{"RPATH": [...], "RUNPATH": [...]}: the entries (split at ':', empty ones kept) of the
    DT_RPATH / DT_RUNPATH tags of an ELF file (32/64-bit, either byte order)."""
    data = pathlib.Path(path).read_bytes()
    assert data[:4] == b"\x7fELF", f"{path}: not an ELF file"
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        sh_fmt, dyn_fmt = end + "IIQQQQIIQQ", end + "qQ"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        sh_fmt, dyn_fmt = end + "IIIIIIIIII", end + "iI"
    sections = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize) for i in range(shnum)]
    out = {"RPATH": [], "RUNPATH": []}
    for sec in sections:
        if sec[1] != SHT_DYNAMIC:
            continue
        off, size, link = sec[4], sec[5], sec[6]
        strtab_off = sections[link][4]
        step = struct.calcsize(dyn_fmt)
        for i in range(size // step):
            tag, val = struct.unpack_from(dyn_fmt, data, off + i * step)
            if tag == 0:
                break
            if tag in (DT_RPATH, DT_RUNPATH):
                s = data[strtab_off + val:data.index(b"\0", strtab_off + val)].decode()
                out["RPATH" if tag == DT_RPATH else "RUNPATH"].extend(s.split(":"))
    return out


def bad_search_entries(path):
    """Entries that are not $ORIGIN-based (an empty entry means the current directory; a
    relative one is relative to it; an absolute one points into some build or host tree)."""
    bad = []
    for kind, entries in search_paths(path).items():
        for e in entries:
            if not (e == "$ORIGIN" or e == "${ORIGIN}" or e.startswith(("$ORIGIN/", "${ORIGIN}/"))):
                bad.append(f"{kind} entry {e!r}")
    return bad


def readelf_agrees(path):
    """readelf's view of the same tags (when binutils is installed), as a cross-check."""
    if not shutil.which("readelf"):
        return None
    dyn = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    got = {"RPATH": [], "RUNPATH": []}
    for line in dyn.splitlines():
        for kind in got:
            if f"({kind})" in line:
                got[kind].extend(line.split("[", 1)[1].rsplit("]", 1)[0].split(":"))
    return got


FAKE_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
  const char *m = getenv("SPMLA_FAKE_MARKER");
  FILE *f = fopen(m ? m : "planted-library-was-loaded", "a");
  if (f) { fputs(LIBNAME "\n", f); fclose(f); }
}
"""

# Vendor runtimes the plugins dlopen by soname (CUDA driver, HIP runtime).
FAKE_NAMES = ["libcuda.so.1", "libcuda.so", "libamdhip64.so", "libamdhip64.so.7",
              "libamdhip64.so.6", "libamdhip64.so.5"]


def plant_fakes(directory):
    """Compiles a shared library with a constructor that records its loading, under every
    vendor soname, into ``directory``. Returns False when no C compiler is available."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return False
    src = pathlib.Path(directory) / "fake.c"
    src.write_text(FAKE_C)
    for name in FAKE_NAMES:
        r = subprocess.run([cc, "-shared", "-fPIC", f'-DLIBNAME="{name}"', "-o",
                            str(pathlib.Path(directory) / name), str(src)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return True


PROBE = textwrap.dedent("""
    import json, spmla
    print(json.dumps([(b["name"], b["library"], b["available"], b["reason"])
                      for b in spmla.backends()]))
""")


def run_with_fakes(python, workdir, env=None):
    """Runs ``import spmla; spmla.backends()`` with cwd = ``workdir`` holding the fakes;
    returns (marker text or None, backends listing)."""
    import json

    marker = pathlib.Path(workdir) / "MARKER"
    env = dict(env if env is not None else os.environ)
    env["SPMLA_FAKE_MARKER"] = str(marker)
    for k in ("LD_LIBRARY_PATH", "SPMLA_BACKEND_PATH", "PYTHONPATH"):
        env.pop(k, None)
    r = subprocess.run([str(python), "-c", PROBE], cwd=workdir, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    listing = json.loads(r.stdout.strip().splitlines()[-1])
    return (marker.read_text() if marker.exists() else None), listing


def shipped_libraries(pkg_dir):
    return sorted(p for p in pathlib.Path(pkg_dir).iterdir()
                  if p.is_file() and (p.suffix == ".so" or ".so." in p.name))


__all__ = ["search_paths", "bad_search_entries", "readelf_agrees", "plant_fakes",
           "run_with_fakes", "shipped_libraries", "sys"]
