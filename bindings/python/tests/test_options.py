"""Handle options (ABI 1.3): ``Handle(..., batch_invariant=True)``, ``set_option`` /
``get_option``, their errors, and a token's bit-identical results across batches on the CPU."""

import numpy as np
import pytest

import spmla
from util import make_cache, rand_bf16


def test_option_get_set_and_errors():
    with spmla.Handle("cpu") as h:
        assert h.batch_invariant is False
        assert h.get_option(spmla.Option.BATCH_INVARIANT) == 0
        h.batch_invariant = True
        assert h.batch_invariant is True and h.get_option(1) == 1
        h.set_option(spmla.Option.BATCH_INVARIANT, 0)
        assert h.batch_invariant is False
        with pytest.raises(spmla.InvalidArgumentError,
                           match=r"value: expected 0 \.\. 1 for SPMLA_OPTION_BATCH_INVARIANT, got 2"):
            h.set_option(spmla.Option.BATCH_INVARIANT, 2)
        with pytest.raises(spmla.InvalidArgumentError, match=r"option: .*got 99 \(unknown option\)"):
            h.set_option(99, 0)
        with pytest.raises(spmla.InvalidArgumentError, match="unknown option"):
            h.get_option(0)
        assert h.batch_invariant is False  # failed calls changed nothing
    assert int(spmla.Option.BATCH_INVARIANT) == 1
    with spmla.Handle("cpu", batch_invariant=True) as h:
        assert h.batch_invariant is True
    with spmla.Handle("cpu", batch_invariant=False) as h:
        assert h.batch_invariant is False
    h = spmla.Handle("cpu")
    h.close()
    with pytest.raises(spmla.InvalidArgumentError, match="closed"):
        h.set_option(spmla.Option.BATCH_INVARIANT, 1)


def test_token_bit_identical_across_batches(rng):
    """The probe token at different positions of batches of 1, 7 and 128 tokens with random
    other tokens (lengths, index lists): its out, lse and max_logits bytes never change."""
    bs, pages, H, D, K, K2 = 16, 6, 4, 512, 48, 20
    cache, _ = make_cache(rng, "v4_fp8", pages, bs, flavor="e4m3fn", dim=D)
    window, _ = make_cache(rng, "v4_fp8", pages, bs, flavor="e4m3fn", dim=D)
    n = pages * bs
    sink = rng.normal(0, 2, H).astype(np.float32)
    pq = rand_bf16(rng, (1, H, D))
    pidx = rng.integers(-1, n + 3, (1, K)).astype(np.int32)
    pxidx = rng.integers(-1, n + 3, (1, K2)).astype(np.int32)
    plen, pxlen = np.int32(K - 5), np.int32(K2 - 3)
    results = []
    with spmla.Handle("cpu", batch_invariant=True) as h:
        for T, pos in ((1, 0), (7, 3), (7, 6), (128, 100)):
            q = rand_bf16(rng, (T, H, D))
            idx = rng.integers(-1, n + 3, (T, K)).astype(np.int32)
            xidx = rng.integers(-1, n + 3, (T, K2)).astype(np.int32)
            lengths = rng.integers(0, K + 1, T).astype(np.int32)
            xlengths = rng.integers(0, K2 + 1, T).astype(np.int32)
            q[pos], idx[pos], xidx[pos], lengths[pos], xlengths[pos] = pq[0], pidx[0], pxidx[0], plen, pxlen
            out, lse, mx = spmla.sparse_attention(q, cache, idx, lengths=lengths, extra_kv_cache=window,
                                                  extra_indices=xidx, extra_lengths=xlengths,
                                                  attn_sink=sink, return_max_logits=True, handle=h)
            results.append((np.asarray(out)[pos].view(np.uint16).copy(), np.asarray(lse)[pos].copy(),
                            np.asarray(mx)[pos].copy()))
    first = results[0]
    assert np.isfinite(first[1]).all() and (first[0] != 0).any()
    for r in results[1:]:
        for a, b in zip(first, r):
            assert a.tobytes() == b.tobytes()
