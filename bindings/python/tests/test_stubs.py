"""The type stubs (spmla/__init__.pyi) describe the runtime API exactly, and every public
function documents its shapes."""

import ast
import inspect
import pathlib

import spmla

STUB = pathlib.Path(spmla.__file__).with_name("__init__.pyi")


def _stub_defs():
    tree = ast.parse(STUB.read_text())
    funcs, classes = {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs[node.name] = node
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
    return funcs, classes


def _params(node):
    a = node.args
    return ([x.arg for x in a.posonlyargs + a.args], [x.arg for x in a.kwonlyargs])


def _runtime_params(fn):
    sig = inspect.signature(fn)
    pos = [p.name for p in sig.parameters.values()
           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kw = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    return pos, kw


def test_stub_exists_and_is_packaged():
    assert STUB.exists() and STUB.with_name("py.typed").exists()
    assert STUB.with_name("_spmla.pyi").exists()


def test_every_public_name_is_stubbed():
    funcs, classes = _stub_defs()
    text = STUB.read_text()
    for name in spmla.__all__:
        if name == "__version__":
            assert "__version__: str" in text
            continue
        assert name in funcs or name in classes, f"{name} missing from __init__.pyi"


def test_stub_signatures_match_runtime():
    funcs, classes = _stub_defs()
    for name, node in funcs.items():
        assert _params(node) == _runtime_params(getattr(spmla, name)), name
    for cname, methods in classes.items():
        cls = getattr(spmla, cname)
        for mname, node in methods.items():
            member = inspect.getattr_static(cls, mname)
            if isinstance(member, property) or mname.startswith("__") and mname not in ("__init__",):
                continue
            fn = getattr(cls, mname)
            pos, kw = _params(node)
            rpos, rkw = _runtime_params(fn)
            if isinstance(member, (classmethod, staticmethod)):
                pos = pos[1:] if isinstance(member, classmethod) else pos
            elif pos and pos[0] == "self":
                rpos = ["self"] + rpos if rpos[:1] != ["self"] else rpos
            assert (pos, kw) == (rpos, rkw), f"{cname}.{mname}"


def test_docstrings_with_shapes():
    for name in ("sparse_attention", "indices_to_slots", "window_indices", "indexer_logits",
                 "indexer_logits_paged", "topk_per_row", "kv_cache_store", "kv_cache_gather"):
        doc = getattr(spmla, name).__doc__
        assert doc and "[" in doc and "]" in doc, f"{name}: docstring without shapes"
    for cls in (spmla.SparseAttentionPlan, spmla.KVCache, spmla.Handle, spmla.Workspace):
        assert cls.__doc__
    assert "[T, H, D_qk]" in spmla.SparseAttentionPlan.__doc__
