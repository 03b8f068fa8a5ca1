"""The README's engine example runs as written (numpy path when torch is absent)."""

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _example():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    examples = [b for b in blocks if "SparseAttentionPlan" in b and "plan.run" in b]
    assert len(examples) == 1, "the README's engine example"
    return examples[0]


def test_readme_example_runs(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_example())
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("layer ")]
    assert len(lines) == 3 and all("(4, 16, 512)" in ln and "(4, 16)" in ln for ln in lines), r.stdout


def test_readme_example_numpy_path_matches_reference(tmp_path):
    """The numpy branch, checked: the example's last layer against the suite's reference."""
    code = _example().replace("    import torch\n", "    raise ImportError\n")
    code += """
import reference as R
ref = R.RefCache(np.asarray(caches[layers - 1].data), "v32_fp8", block_size, 576)
ro, rl, _ = R.sparse_attention(R.bf16_bits_to_f32(q.array), [(ref, slots, lengths)])
from util import assert_attention_close
assert_attention_close(out, lse, ro, rl)
assert (np.asarray(lengths) == topk).all()
print("checked")
"""
    script = tmp_path / "example_numpy.py"
    script.write_text(code)
    env_path = str(pathlib.Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env={**__import__("os").environ, "PYTHONPATH": env_path + ":" +
                                         __import__("os").environ.get("PYTHONPATH", "")})
    assert r.returncode == 0 and "checked" in r.stdout, r.stdout + r.stderr


def test_readme_example_runs_without_ml_dtypes_or_torch(tmp_path):
    """What `pip install` brings is numpy only: the example and the package need nothing else
    (ml_dtypes and torch blocked in the interpreter that runs it)."""
    script = tmp_path / "example_numpy_only.py"
    script.write_text("import sys\nsys.modules['ml_dtypes'] = None\nsys.modules['torch'] = None\n"
                      + _example() +
                      "\nassert 'ml_dtypes' not in {m.split('.')[0] for m, v in sys.modules.items() if v}\n"
                      "print('numpy only', out.dtype)\n")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numpy only uint16" in r.stdout, r.stdout
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("layer ")]
    assert len(lines) == 3 and all("(4, 16, 512)" in ln for ln in lines), r.stdout
