"""Self-tests of the numpy reference (tests/reference.py) against public vectors and hand-made
cases, so that the comparisons of spmla against it mean something. None of these call spmla."""

import math

import numpy as np
import pytest

import reference as R
from util import bf16, load_case


def _tsv(path):
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]


def test_fp8_decode_every_code(vectors):
    rows = _tsv(vectors / "fp8_codes.tsv")
    assert len(rows) == 256
    b = np.arange(256, dtype=np.uint8)
    got = {"e4m3fn": R.fp8_decode(b, "e4m3fn"), "e4m3fnuz": R.fp8_decode(b, "e4m3fnuz"),
           "ue8m0": R.ue8m0_decode(b)}
    for row in rows:
        i = int(row["byte"])
        for col in ("e4m3fn", "e4m3fnuz", "ue8m0"):
            want = float(row[col])
            have = float(got[col][i])
            if math.isnan(want):
                assert math.isnan(have), (col, i)
            else:
                assert have == want and math.copysign(1, have) == math.copysign(1, want), (col, i)


def test_fp8_encode_table(vectors):
    rows = _tsv(vectors / "fp8_encode.tsv")
    n = 0
    for row in rows:
        x = np.array([int(row["f32_bits"], 16)], dtype=np.uint32).view(np.float32)
        for fl in ("e4m3fn", "e4m3fnuz"):
            if row[fl] == "-":
                continue
            assert int(R.fp8_encode(x, fl)[0]) == int(row[fl], 16), (row, fl)
            n += 1
    assert n > 1200


def test_fp8_encode_saturates():
    x = np.array([1e6, -1e6, 449.0, 300.0, np.inf, -np.inf], np.float32)
    assert R.fp8_decode(R.fp8_encode(x, "e4m3fn"), "e4m3fn").tolist() == [448, -448, 448, 288, 448, -448]
    assert R.fp8_decode(R.fp8_encode(x, "e4m3fnuz"), "e4m3fnuz").tolist() == [240, -240, 240, 240, 240, -240]
    assert np.isnan(R.fp8_decode(R.fp8_encode(np.array([np.nan], np.float32), "e4m3fn"), "e4m3fn")[0])


@pytest.mark.parametrize("amax,expect", [(448.0, 0), (448.0 * 2, 1), (449.0, 1), (0.0, -13),
                                         (3e-6, -13), (0.03, -13), (1.0, -8), (224.0, -1)])
def test_pow2_scale(amax, expect):
    assert R.pow2_scale_exponent(amax, 448.0) == expect


def test_quant_matches_flashmla_quant_py(vectors):
    case = load_case(vectors, "quant_small")
    bs = 16
    # V3.2: 656 B per token, every byte defined.
    kv = case["v32_kv"].reshape(32, 576)
    ref = R.RefCache(np.zeros((2, 656 * bs), np.uint8), "v32_fp8", bs, 576)
    R.store(ref, kv, np.arange(32))
    assert np.array_equal(ref.data.reshape(2, bs, 656), case["v32_k_cache"])
    # V4 (MODEL1): compare the bytes quant.py defines (not the pad byte nor the page tail).
    kv = case["model1_kv"].reshape(32, 512)
    ref = R.RefCache(np.zeros((2, 9792), np.uint8), "v4_fp8", bs, 512)
    R.store(ref, kv, np.arange(32))
    defined = np.ones(9792, bool)
    defined[bs * 576 + 7:bs * 584:8] = False
    defined[bs * 584:] = False
    assert np.array_equal(ref.data[:, defined], case["model1_k_cache_pages"][:, defined])


def test_dequant_roundtrip_close():
    rng = np.random.default_rng(1)
    for layout, dim in (("v32_fp8", 576), ("v4_fp8", 512), ("bf16", 576), ("fp8_per_tensor", 512),
                        ("indexer_fp8", 128)):
        for fl in ("e4m3fn", "e4m3fnuz"):
            bs = 3
            ref = R.RefCache(np.zeros((2, R.packed_page_bytes(layout, bs, dim)), np.uint8), layout,
                             bs, dim, flavor=fl, scale=0.01)
            kv = bf16(rng.standard_normal((6, dim)) * 0.5)
            R.store(ref, kv.view(np.uint16), np.arange(6))
            back = R.dequant_all(ref)
            rel = np.abs(back - kv.astype(np.float32)).max() / np.abs(kv.astype(np.float32)).max()
            assert rel < (1e-6 if layout == "bf16" else 0.07), (layout, fl, rel)


def _check(out, lse, ref_out, ref_lse, out_tol, lse_tol):
    fin = np.isfinite(ref_lse)
    assert np.array_equal(np.isfinite(lse), fin)
    assert np.abs(out - ref_out).max() < out_tol
    assert np.abs(lse[fin] - ref_lse[fin]).max() < lse_tol


@pytest.mark.parametrize("name", ["v32_decode_small", "v32_decode_sink"])
def test_attention_reference_vs_flashmla_v32_decode(vectors, name):
    c = load_case(vectors, name)
    b, s_q, h, d = c["q"].shape
    kc = c["k_cache"]
    cache = R.RefCache(kc.reshape(kc.shape[0], -1), "v32_fp8", 64, 576)
    q = R.bf16_bits_to_f32(c["q"]).reshape(b * s_q, h, d)
    idx = c["indices"].reshape(b * s_q, -1)
    out, lse, _ = R.sparse_attention(q, [(cache, idx, None)], c.get("attn_sink"), 0.75)
    ref_out = R.bf16_bits_to_f32(c["out"]).reshape(b * s_q, h, 512)
    ref_lse = c["lse"].transpose(0, 2, 1).reshape(b * s_q, h)
    _check(out, lse, ref_out, ref_lse, 2e-3, 1e-4)


def test_attention_reference_vs_flashmla_v4_decode(vectors):
    c = load_case(vectors, "model1_decode_small")
    q = R.bf16_bits_to_f32(c["q"]).reshape(1, 64, 512)
    main = R.RefCache(c["k_cache_pages"], "v4_fp8", 64, 512)
    extra = R.RefCache(c["extra_k_cache_pages"], "v4_fp8", 128, 512)
    out, lse, _ = R.sparse_attention(
        q, [(main, c["indices"].reshape(1, -1), c["topk_length"]),
            (extra, c["extra_indices"].reshape(1, -1), c["extra_topk_length"])],
        c["attn_sink"], 0.75)
    _check(out, lse, R.bf16_bits_to_f32(c["out"]).reshape(1, 64, 512),
           c["lse"].reshape(1, 64), 2e-3, 1e-4)


@pytest.mark.parametrize("name,dim", [("v32_prefill_small", 576), ("model1_prefill_small", 512)])
def test_attention_reference_vs_flashmla_prefill(vectors, name, dim):
    c = load_case(vectors, name)
    kv = c["kv"].reshape(-1, dim)
    cache = R.RefCache(kv.view(np.uint8).reshape(kv.shape[0], -1), "bf16", 1, dim)
    out, lse, mx = R.sparse_attention(R.bf16_bits_to_f32(c["q"]), [(cache, c["indices"][:, 0, :],
                                      c.get("topk_length"))], c["attn_sink"], 5.0)
    _check(out, lse, R.bf16_bits_to_f32(c["out"]), c["lse"], 2e-3, 1e-4)
    fin = np.isfinite(c["max_logits"])
    assert np.array_equal(np.isfinite(mx), fin)
    assert np.abs(mx[fin] - c["max_logits"][fin]).max() < 1e-4


def test_attention_reference_hand_case():
    # Two keys with logits 0 and log(3): weights 1/4, 3/4; a sink of 0 scales by 1/(1 + 1/4).
    d = 512
    rows = np.zeros((2, d), np.float32)
    rows[0, 0] = 0.0
    rows[1, 0] = 1.0
    rows[0, 1], rows[1, 1] = 4.0, 8.0
    cache = R.RefCache(np.zeros((2, 2 * d), np.uint8), "bf16", 1, d)
    R.store(cache, R.f32_to_bf16_bits(rows), [0, 1])
    q = np.zeros((1, 1, d), np.float32)
    q[0, 0, 0] = 1.0
    out, lse, mx = R.sparse_attention(q, [(cache, np.array([[0, 1, -1, 7]]), None)], None,
                                      float(np.log(3.0)))
    assert np.isclose(lse[0, 0], np.log(4.0)) and np.isclose(mx[0, 0], np.log(3.0))
    assert np.isclose(out[0, 0, 1], 0.25 * 4 + 0.75 * 8)
    out2, _, _ = R.sparse_attention(q, [(cache, np.array([[0, 1, -1, 7]]), None)],
                                    np.array([0.0]), float(np.log(3.0)))
    assert np.isclose(out2[0, 0, 1], 7.0 / 1.25)
    out3, lse3, mx3 = R.sparse_attention(q, [(cache, np.array([[0, 1]]), np.array([0]))])
    assert np.all(out3 == 0) and np.isposinf(lse3).all() and np.isneginf(mx3).all()


def test_topk_reference_rules():
    x = np.array([[1.0, np.nan, 3.0, 3.0, -np.inf, 2.0]], np.float32)
    assert R.topk_per_row(x, 3).tolist() == [[2, 3, 5]]
    assert R.topk_per_row(x, 5).tolist() == [[0, 2, 3, 4, 5]]
    assert R.topk_per_row(x, 6).tolist() == [[0, 1, 2, 3, 4, 5]]
    assert R.topk_per_row(x, 8).tolist() == [[0, 1, 2, 3, 4, 5, -1, -1]]
    assert R.topk_per_row(x, 2, row_starts=np.array([2]), row_ends=np.array([4])).tolist() == [[0, 1]]


def test_slots_reference_hand_case():
    table = np.array([[5, 2, -1]], np.int32)
    pos = np.array([[0, 3, 4, 9, -1, 8]], np.int32)
    slots, lengths, indptr, ragged = R.indices_to_slots(pos, np.array([0]), table, 4)
    assert slots.tolist() == [[20, 23, 8, -1, -1, -1]]
    assert lengths.tolist() == [3] and indptr.tolist() == [0, 3] and ragged.tolist() == [20, 23, 8]
    s, l = R.window_indices(np.array([5], np.int32), np.array([0]), table, 4, 1, 3)
    assert s.tolist() == [[23, 8, 9]] and l.tolist() == [3]
    s, l = R.window_indices(np.array([13], np.int32), np.array([0]), table, 4, 4, 8)
    assert s.tolist() == [[20, 21, 22, -1, -1, -1, -1, -1]] and l.tolist() == [3]
