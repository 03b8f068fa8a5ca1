"""No library spmla ships searches the current directory (or any non-$ORIGIN place) for its
dependencies: the installed package's .so files have only $ORIGIN-based RUNPATH/RPATH entries,
and vendor runtimes planted in the working directory (a fake libcuda.so.1, libamdhip64.so)
are never loaded by ``spmla.backends()``. test_wheel.py runs the same checks on the wheel."""

import os
import pathlib
import sys

import pytest

import elfcheck
import spmla

PKG_DIR = pathlib.Path(spmla.__file__).resolve().parent


def test_elf_reader_sees_empty_entries(tmp_path):
    """The checker itself: a library linked with an empty entry and a relative one is caught."""
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.fail("no C compiler (cc) to build the checker's sample library")
    src = tmp_path / "x.c"
    src.write_text("int x;\n")
    lib = tmp_path / "libx.so"
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src),
                        "-Wl,-rpath,:::lib:$ORIGIN", "-Wl,--enable-new-dtags"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert elfcheck.search_paths(lib)["RUNPATH"] == ["", "", "", "lib", "$ORIGIN"]
    bad = elfcheck.bad_search_entries(lib)
    assert bad.count("RUNPATH entry ''") == 3 and "RUNPATH entry 'lib'" in bad
    ref = elfcheck.readelf_agrees(lib)
    if ref is not None:
        assert ref == elfcheck.search_paths(lib)


def test_installed_libraries_search_only_origin():
    libs = elfcheck.shipped_libraries(PKG_DIR)
    names = [p.name for p in libs]
    assert any(n.startswith("libspmla.so") for n in names), names
    assert any(n.startswith("_spmla") for n in names), names
    for lib in libs:
        assert elfcheck.bad_search_entries(lib) == [], (lib, elfcheck.search_paths(lib))
        ref = elfcheck.readelf_agrees(lib)
        if ref is not None:
            assert ref == elfcheck.search_paths(lib), lib
    ext = [p for p in libs if p.name.startswith("_spmla")][0]
    assert elfcheck.search_paths(ext)["RUNPATH"] + elfcheck.search_paths(ext)["RPATH"] == \
        ["$ORIGIN"]


def test_vendor_runtime_in_cwd_is_not_loaded(tmp_path):
    if not elfcheck.plant_fakes(tmp_path):
        pytest.fail("no C compiler (cc) to build the planted libraries")
    marker, listing = elfcheck.run_with_fakes(sys.executable, tmp_path)
    assert marker is None, f"a planted library was loaded from the working directory: {marker}"
    # Say what was exercised: with a GPU plugin shipped the probe really dlopen'ed the runtime.
    plugins = [b for b in listing if b[1]]
    print("plugins probed:", plugins)
    assert any(b[0] == "cpu" and b[2] for b in listing), listing
