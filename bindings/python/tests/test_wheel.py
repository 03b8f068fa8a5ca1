"""Builds the wheel, installs it into a fresh venv and runs operations from outside the source
tree: the wheel alone must carry libspmla, the extension and the backend plugins ($ORIGIN).

The wheel is build-dist's CPU-only wheel (spmla-<v>+cpu-..., built once per session with the
sdist: conftest.py's dist fixture, also used by test_dist.py), unless SPMLA_WHEEL_CMAKE_DEFINES
asks for something else than SPMLA_CPU_ONLY=ON: then `pip wheel` builds the default
configuration with those definitions, the checks that depend on the switch are skipped and the
rest still run. Its venv has numpy only (ml_dtypes is
blocked in the checks), and every shipped .so searches $ORIGIN only."""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy
import pytest

import elfcheck

PKG = pathlib.Path(__file__).resolve().parent.parent

CHECK = textwrap.dedent(r"""
    import os, sys
    sys.modules["ml_dtypes"] = None  # pip brings numpy only: nothing may need ml_dtypes
    import numpy as np
    import spmla
    here = os.path.dirname(spmla.__file__)
    assert here.startswith(sys.prefix), (here, sys.prefix)
    assert os.path.exists(os.path.join(here, "libspmla.so.1"))
    info = spmla.info()
    cpu = [b for b in info["backends"] if b["name"] == "cpu"][0]
    assert cpu["available"]
    for b in info["backends"]:
        if b["library"]:
            assert b["library"].startswith(here), b  # plugins come from the wheel
    x = np.array([[0.5, 3.0, -1.0, 2.0, 9.0]], np.float32)
    assert spmla.topk_per_row(x, 2).tolist() == [[1, 4]]
    cache = spmla.KVCache.zeros("v32_fp8", 2, 4)
    kv = np.zeros((1, 576), np.uint16)
    kv[0, :3] = [0x3F80, 0x4000, 0xBF80]  # bf16 1, 2, -1
    spmla.kv_cache_store(kv, np.array([5], np.int32), cache, dtype="bf16")
    back = np.zeros((1, 576), np.uint16)
    spmla.kv_cache_gather(cache, np.array([5], np.int32), out=back, dtype="bf16")
    assert back[0, :4].tolist() == [0x3F80, 0x4000, 0xBF80, 0], back[0, :4]
    try:
        spmla.topk_per_row(x, 0)
    except spmla.InvalidArgumentError as e:
        assert "indices.shape[1]" in e.message
    else:
        raise AssertionError("no error")
    print("wheel ok", spmla.__version__, [b["name"] for b in info["backends"] if b["available"]])
""")


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def cpu_only_defines():
    """True when the wheel under test is build-dist's +cpu wheel: SPMLA_WHEEL_CMAKE_DEFINES unset
    or asking for SPMLA_CPU_ONLY=ON (anything else, e.g. scripts/gpu-check's CUDA architectures,
    builds a wheel of the default configuration with those definitions)."""
    defines = os.environ.get("SPMLA_WHEEL_CMAKE_DEFINES", "").split()
    return not defines or "SPMLA_CPU_ONLY=ON" in defines


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, request):
    if os.environ.get("SPMLA_SKIP_WHEEL_TEST") == "1":
        pytest.skip("SPMLA_SKIP_WHEEL_TEST=1")
    if not (PKG / "pyproject.toml").exists():
        pytest.skip("not run from a source checkout")
    if cpu_only_defines():
        # The same build as test_dist.py's (conftest.py's dist fixture: build-dist --sdist --cpu).
        return request.getfixturevalue("dist")["cpu"]
    wheel_dir = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", str(PKG), "-w", str(wheel_dir), "--no-deps", "-q"]
    try:
        import pybind11  # noqa: F401
        import scikit_build_core  # noqa: F401

        cmd.append("--no-build-isolation")  # offline machines: use the installed build tools
    except ImportError:
        pass
    for d in os.environ.get("SPMLA_WHEEL_CMAKE_DEFINES", "").split():  # e.g. SPMLA_ENABLE_CUDA=OFF
        cmd.append(f"-Ccmake.define.{d}")
    _run(cmd, timeout=3600)
    wheels = list(wheel_dir.glob("spmla-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _venv(tmp_path, with_pip):
    """A fresh venv (without the numpy link yet: see _link_numpy)."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)] + ([] if with_pip else ["--without-pip"]))
    py = venv / "bin" / "python"
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    return py, pathlib.Path(site)


def _link_numpy(site):
    """numpy from this interpreter's site directory through a .pth file, appended after the
    venv's own site-packages, so the wheel's spmla wins over any spmla installed beside numpy.
    Written after installing: pip would otherwise see that other spmla and skip the wheel."""
    (site / "zz_numpy.pth").write_text(str(pathlib.Path(numpy.__file__).parent.parent) + "\n")


def _clean_env():
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "LD_LIBRARY_PATH", "SPMLA_BACKEND_PATH")}


@pytest.mark.slow
def test_wheel_contents_and_unpacked_install(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    assert "spmla/libspmla.so.1" in names and "spmla/__init__.pyi" in names
    assert "spmla/py.typed" in names and "spmla/_spmla.pyi" in names
    assert "spmla/torch.py" in names and "spmla/flash_mla.py" in names  # the engine modules
    meta_requires = [n for n in names if n.endswith(".dist-info/METADATA")]
    with zipfile.ZipFile(wheel) as z:  # torch stays out of the dependencies
        requires = [ln for ln in z.read(meta_requires[0]).decode().splitlines()
                    if ln.startswith("Requires-Dist:")]
    assert not any("torch" in ln for ln in requires), requires
    assert any(n.startswith("spmla/_spmla") and n.endswith(".so") for n in names)
    assert not any(n.startswith(("include/", "lib/", "share/", "bin/")) for n in names), names
    assert not any("/tests/" in n for n in names)
    # The root LICENSE (Apache-2.0) in .dist-info, and the license classifier.
    lic = [n for n in names if ".dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
    assert lic, names
    with zipfile.ZipFile(wheel) as z:
        assert z.read(lic[0]).decode().lstrip().startswith("Apache License"), lic
        meta = z.read([n for n in names if n.endswith(".dist-info/METADATA")][0]).decode()
    assert "Classifier: License :: OSI Approved :: Apache Software License" in meta, meta
    if cpu_only_defines():
        # The +cpu wheel: no GPU plugin, whatever toolchains this machine has.
        assert "+cpu-" in wheel.name, wheel.name
        assert not any("libspmla_backend_" in n for n in names), names
    py, site = _venv(tmp_path, with_pip=False)
    with zipfile.ZipFile(wheel) as z:  # installing a wheel = unpacking it into site-packages
        z.extractall(site)
    _link_numpy(site)
    for so in (site / "spmla").glob("*.so*"):
        so.chmod(0o755)
    libs = elfcheck.shipped_libraries(site / "spmla")
    assert libs
    for so in libs:
        # Only $ORIGIN-based RUNPATH/RPATH entries: no empty one (= the current directory), no
        # relative or build-tree one.
        assert elfcheck.bad_search_entries(so) == [], (so, elfcheck.search_paths(so))
        if so.name.startswith("_spmla"):
            paths = elfcheck.search_paths(so)
            assert paths["RUNPATH"] + paths["RPATH"] == ["$ORIGIN"], paths
    if shutil.which("readelf"):
        for so in libs:
            dyn = _run(["readelf", "-d", str(so)]).stdout
            if so.name.startswith("_spmla"):
                assert "$ORIGIN" in dyn and "libspmla.so.1" in dyn, dyn
            assert "/build" not in dyn and "/work" not in dyn, dyn  # no build-tree rpaths
    r = _run([str(py), "-c", CHECK], cwd=tmp_path, env=_clean_env(), timeout=600)
    assert "wheel ok" in r.stdout
    # Vendor runtimes planted in the working directory are never loaded.
    work = tmp_path / "cwd"
    work.mkdir()
    assert elfcheck.plant_fakes(work), "no C compiler to build the planted libraries"
    marker, listing = elfcheck.run_with_fakes(py, work, env=_clean_env())
    assert marker is None, f"a planted library was loaded from the working directory: {marker}"


@pytest.mark.slow
def test_wheel_installs_with_pip(wheel, tmp_path):
    py, site = _venv(tmp_path, with_pip=True)
    _run([str(py), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)], timeout=600)
    _link_numpy(site)
    r = _run([str(py), "-c", CHECK], cwd=tmp_path, env=_clean_env(), timeout=600)
    assert "wheel ok" in r.stdout
