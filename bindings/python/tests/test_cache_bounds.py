"""A KVCache never lets the library touch memory outside the array the caller handed over.

Rule (spmla.KVCache, tensor_view.cpp): the bytes the C descriptor spans
(``spmla_kv_cache_size_bytes`` = page stride x num_pages) lie inside the array; for a 2-D view
with gaps between its rows (``data[:, :n]`` of a wider buffer) each row holds a whole packed page
and the gaps are the padding of a padded stride. Zero, negative and too small strides, too short
arrays and negative num_pages are refused with spmla errors.

Every case hands over a view in the middle of a larger buffer filled with a pattern and checks
that the guard bytes around it (and the gaps of a gapped view) are intact after kv_cache_store,
kv_cache_gather and an operation that reads the cache (sparse_attention / indexer_logits_paged),
and that the results equal those of a plain packed cache.
"""

import numpy as np
import pytest

import spmla

GUARD = 512
PATTERN = 0xA5
PAGES = 3

LAYOUTS = [  # (layout, head_dim given to KVCache, D of the kv rows)
    ("bf16", 512, 512),
    ("fp8_per_tensor", 576, 576),
    ("v32_fp8", 0, 576),
    ("v4_fp8", 0, 512),
    ("indexer_fp8", 128, 128),
]
BLOCK_SIZES = [1, 2, 53, 64]


class Guarded:
    """``nbytes`` of a 64-byte aligned buffer, with GUARD pattern bytes on each side."""

    def __init__(self, nbytes, fill=PATTERN):
        raw = np.empty(nbytes + 2 * GUARD + 64, np.uint8)
        off = (-raw.ctypes.data) % 64
        self.buf = raw[off:off + nbytes + 2 * GUARD]
        self.buf[:] = fill
        self.view = self.buf[GUARD:GUARD + nbytes]
        self.fill = fill

    def check(self, what, extra_mask=None):
        assert np.all(self.buf[:GUARD] == self.fill), f"{what}: guard bytes before the array written"
        assert np.all(self.buf[GUARD + self.view.size:] == self.fill), \
            f"{what}: guard bytes after the array written"
        if extra_mask is not None:
            assert np.all(self.view[extra_mask] == self.fill), f"{what}: gap bytes written"


def _bf16(rng, shape):
    f = (rng.standard_normal(shape) * 2).astype(np.float32)
    return (f.view(np.uint32) >> 16).astype(np.uint16)


def _kw(layout, head_dim):
    kw = {"head_dim": head_dim}
    if layout == "fp8_per_tensor":
        kw["scale"] = 0.5
    if layout == "bf16":
        kw["fp8_flavor"] = None
    return kw


def _variants(layout, bs, head_dim):
    """(name, Guarded, data, KVCache kwargs, mask of gap bytes of the view or None)."""
    pb = spmla.page_bytes(layout, bs, head_dim=head_dim,
                          **({"fp8_flavor": None} if layout == "bf16" else {}))
    out = []
    g = Guarded(PAGES * pb)  # packed, [pages, page_bytes]
    out.append(("packed-2d", g, g.view.reshape(PAGES, pb), {}, None))
    g = Guarded(PAGES * pb)  # packed, flat
    out.append(("packed-flat", g, g.view, {}, None))
    stride = pb + 48 + (-(pb + 48)) % 16  # padded stride, a multiple of 16
    g = Guarded(PAGES * stride)  # padded, contiguous [pages, stride]
    out.append(("padded-2d", g, g.view.reshape(PAGES, stride), {}, None))
    g = Guarded(PAGES * stride)  # padded, flat with an explicit stride
    out.append(("padded-flat", g, g.view, {"page_stride_bytes": stride}, None))
    g = Guarded(PAGES * stride)  # a view with gaps: data[:, :page_bytes] of the padded buffer
    gap = np.zeros((PAGES, stride), bool)
    gap[:, pb:] = True
    out.append(("gapped", g, g.view.reshape(PAGES, stride)[:, :pb], {}, gap.reshape(-1)))
    return pb, out


@pytest.mark.parametrize("bs", BLOCK_SIZES)
@pytest.mark.parametrize("layout,head_dim,D", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_ops_stay_inside_the_array(layout, head_dim, D, bs, rng):
    pb, variants = _variants(layout, bs, head_dim)
    kw = _kw(layout, head_dim)
    n = PAGES * bs
    N = min(n, 24)
    kv = _bf16(rng, (N + 2, D))
    slots = np.concatenate([rng.choice(n - 1, N - 1, replace=False), [n - 1, -1, n]])
    slots = slots.astype(np.int32)  # the last slot of the last page, and two that are skipped
    gslots = np.concatenate([np.arange(n), [-1, n, n + 7]]).astype(np.int32)
    ref = spmla.KVCache.zeros(layout, PAGES, bs, **kw)
    spmla.kv_cache_store(kv, slots, ref, dtype="bf16")
    want = spmla.kv_cache_gather(ref, gslots, dtype="bf16").view(np.uint16)
    if layout == "indexer_fp8":
        Hi = 2
        q = np.frombuffer(rng.integers(0, 0x70, (1, 1, Hi, D), np.uint8).tobytes(), np.uint8)
        q = q.reshape(1, 1, Hi, D)
        table = np.arange(PAGES, dtype=np.int32).reshape(1, PAGES)
        ctx = np.array([n], np.int32)
        w = rng.standard_normal((1, Hi)).astype(np.float32)

        def reads(cache):
            return spmla.indexer_logits_paged(q, cache, table, ctx, w, dtype="fp8_e4m3fn")
    else:
        q = _bf16(rng, (2, 2, D))
        idx = np.stack([rng.permutation(n), rng.permutation(n)]).astype(np.int32)

        def reads(cache):
            o, lse = spmla.sparse_attention(q, cache, idx, dtype="bf16")
            return np.concatenate([o.view(np.uint16).reshape(-1).astype(np.float64),
                                   lse.reshape(-1).astype(np.float64)])
    want_read = reads(ref)
    for name, g, data, extra, gap in variants:
        what = f"{layout} bs={bs} {name}"
        cache = spmla.KVCache(data, layout, block_size=bs, **kw, **extra)
        assert cache.num_pages == PAGES, what
        data_bytes = data.reshape(-1) if name != "gapped" else data
        data_bytes[...] = 0
        g.check(what + " (zero fill)", gap)
        spmla.kv_cache_store(kv, slots, cache, dtype="bf16")
        g.check(what + " after kv_cache_store", gap)
        got = spmla.kv_cache_gather(cache, gslots, dtype="bf16").view(np.uint16)
        g.check(what + " after kv_cache_gather", gap)
        assert np.array_equal(got, want), what
        got_read = reads(cache)
        g.check(what + " after reading it", gap)
        assert np.array_equal(got_read, want_read), what


@pytest.mark.parametrize("bs", BLOCK_SIZES)
def test_v4_last_page_needs_its_rounding(bs, rng):
    """A V4_FP8 array that ends 584*bs bytes into its last page does not hold that page: the
    packed page is rounded up to a multiple of 576 and kv_cache_store writes the rounding."""
    pb = spmla.page_bytes("v4_fp8", bs)
    assert pb > 584 * bs  # true for 1, 2, 53, 64
    g = Guarded((PAGES - 1) * pb + 584 * bs)
    cache = spmla.KVCache(g.view, "v4_fp8", block_size=bs)
    assert cache.num_pages == PAGES - 1
    with pytest.raises(spmla.InvalidArgumentError, match=r"num_pages: expected at most 2"):
        spmla.kv_cache_store(_bf16(rng, (1, 512)), np.array([0], np.int32),
                             spmla.KVCache(g.view, "v4_fp8", block_size=bs, num_pages=PAGES),
                             dtype="bf16")
    g.check("refused store")
    n = PAGES * bs
    # Every slot, those of the missing page included (out of range: skipped).
    spmla.kv_cache_store(_bf16(rng, (n, 512)), np.arange(n, dtype=np.int32), cache, dtype="bf16")
    g.check("store into a V4 cache that ends 584*bs bytes into a page")
    got = spmla.kv_cache_gather(cache, np.arange(n, dtype=np.int32), dtype="bf16").view(np.uint16)
    assert np.all(got[(PAGES - 1) * bs:] == 0)


@pytest.mark.parametrize("bs", BLOCK_SIZES)
def test_v4_584_row_view_is_refused(bs, rng):
    """data[:, :584*bs] of a padded V4 buffer: each row lacks the page's rounding, which the
    library writes, so the view is refused (the message says which view to hand over)."""
    pb = spmla.page_bytes("v4_fp8", bs)
    g = Guarded(PAGES * pb)
    view = g.view.reshape(PAGES, pb)[:, :584 * bs]
    with pytest.raises(spmla.InvalidArgumentError, match=rf"rows of at least {pb} bytes"):
        spmla.kv_cache_store(_bf16(rng, (1, 512)), np.array([0], np.int32),
                             spmla.KVCache(view, "v4_fp8", block_size=bs), dtype="bf16")
    assert np.all(g.buf == PATTERN)
    ok = spmla.KVCache(g.view.reshape(PAGES, pb)[:, :pb], "v4_fp8", block_size=bs)
    assert ok.num_pages == PAGES


def _pb(layout="v32_fp8", bs=2):
    return spmla.page_bytes(layout, bs)


@pytest.mark.parametrize("make", ["broadcast_to", "as_strided"])
@pytest.mark.parametrize("op", ["store", "gather", "attention", "describe"])
def test_zero_page_stride_is_refused(make, op, rng):
    """A first stride of 0 (broadcast_to / as_strided) is refused, never passed on as the C ABI's
    "packed" stride (which read the parent buffer and wrote hundreds of MB past it)."""
    bs, pages = 2, 4096
    pb = _pb(bs=bs)
    g = Guarded(4096)
    if make == "broadcast_to":
        data = np.broadcast_to(g.view[:pb], (pages, pb))
    else:
        data = np.lib.stride_tricks.as_strided(g.view[:pb], (pages, pb), (0, 1))
    cache = spmla.KVCache(data, "v32_fp8", block_size=bs)
    with pytest.raises(spmla.InvalidArgumentError,
                       match=r"strides\[0\]: expected > 0.*got 0|read-only but the call writes"):
        if op == "store":
            spmla.kv_cache_store(_bf16(rng, (4, 576)), np.array([0, 1, pages * bs - 1, 5000], np.int32),
                                 cache, dtype="bf16")
        elif op == "gather":
            spmla.kv_cache_gather(cache, np.array([pages * bs - 1], np.int32))
        elif op == "attention":
            spmla.sparse_attention(_bf16(rng, (1, 1, 576)), cache,
                                   np.array([[pages * bs - 1]], np.int32), dtype="bf16")
        else:
            cache.num_pages
    g.check("zero stride")


def test_zero_stride_flat_and_inner_are_refused():
    g = Guarded(4096)
    flat = np.broadcast_to(g.view[:1], (100000,))
    with pytest.raises(spmla.InvalidArgumentError, match=r"strides\[0\]: expected > 0"):
        spmla.KVCache(flat, "v32_fp8", block_size=1).num_pages
    inner = np.broadcast_to(g.view[:4].reshape(4, 1), (4, 656))
    with pytest.raises(spmla.InvalidArgumentError, match=r"strides\[1\]: expected > 0"):
        spmla.KVCache(inner, "v32_fp8", block_size=1).num_pages


def test_negative_stride_is_refused(rng):
    pb = _pb()
    g = Guarded(4 * pb)
    data = g.view.reshape(4, pb)[::-1]
    with pytest.raises(spmla.InvalidArgumentError, match=r"strides\[0\]: expected > 0.*got -"):
        spmla.kv_cache_store(_bf16(rng, (1, 576)), np.array([7], np.int32),
                             spmla.KVCache(data, "v32_fp8", block_size=2), dtype="bf16")
    g.check("negative stride")


def test_too_small_page_stride_is_refused(rng):
    pb = _pb()
    g = Guarded(4 * pb)
    # Overlapping rows: a first stride below the packed page.
    over = np.lib.stride_tricks.as_strided(g.view, (4, pb), (pb - 16, 1))
    with pytest.raises(spmla.InvalidArgumentError,
                       match=rf"page_stride_bytes: expected >= {pb} .*got {pb - 16}"):
        spmla.kv_cache_store(_bf16(rng, (1, 576)), np.array([7], np.int32),
                             spmla.KVCache(over, "v32_fp8", block_size=2), dtype="bf16")
    for bad in (pb - 16, 16):
        with pytest.raises(spmla.InvalidArgumentError,
                           match=rf"page_stride_bytes: expected >= {pb} .*got {bad}"):
            spmla.KVCache(g.view, "v32_fp8", block_size=2, page_stride_bytes=bad).num_pages
    # bf16 rows of one token each with 16 tokens per page: the row stride is no page stride.
    rows = np.zeros((64, 512), np.uint16)
    with pytest.raises(spmla.InvalidArgumentError, match="page_stride_bytes: expected >= 16384"):
        spmla.KVCache(rows, "bf16", block_size=16, head_dim=512, fp8_flavor=None).num_pages
    g.check("too small stride")


@pytest.mark.parametrize("value", [0, -1, -16])
def test_zero_or_negative_explicit_stride_is_refused(value):
    with pytest.raises(spmla.InvalidArgumentError,
                       match=rf"spmla.KVCache: page_stride_bytes: expected an integer >= 1.*got {value}"):
        spmla.KVCache(np.zeros(4096, np.uint8), "v32_fp8", block_size=2, page_stride_bytes=value)


@pytest.mark.parametrize("value", [-1, -3])
def test_negative_num_pages_is_refused(value):
    """num_pages=-3 is an error, not "as many as fit"."""
    with pytest.raises(spmla.InvalidArgumentError,
                       match=rf"spmla.KVCache: num_pages: expected an integer >= 0.*got {value}"):
        spmla.KVCache(np.zeros(4096, np.uint8), "v32_fp8", block_size=2, num_pages=value)


def test_num_pages_larger_than_fits_is_refused(rng):
    pb = _pb()
    for data in (np.zeros(3 * pb, np.uint8), np.zeros((3, pb), np.uint8),
                 np.zeros((3, pb + 64), np.uint8)[:, :pb]):
        with pytest.raises(spmla.InvalidArgumentError, match="num_pages: expected at most 3"):
            spmla.KVCache(data, "v32_fp8", block_size=2, num_pages=4).num_pages
        assert spmla.KVCache(data, "v32_fp8", block_size=2, num_pages=2).num_pages == 2


@pytest.mark.parametrize("layout,head_dim,D", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_array_too_short_is_refused(layout, head_dim, D, rng):
    kw = _kw(layout, head_dim)
    for bs in (1, 53):
        pb = spmla.page_bytes(layout, bs, head_dim=head_dim,
                              **({"fp8_flavor": None} if layout == "bf16" else {}))
        g = Guarded(PAGES * pb - 16)
        c = spmla.KVCache(g.view, layout, block_size=bs, **kw)
        assert c.num_pages == PAGES - 1
        with pytest.raises(spmla.InvalidArgumentError, match="num_pages: expected at most"):
            spmla.KVCache(g.view, layout, block_size=bs, num_pages=PAGES, **kw).num_pages
        n = PAGES * bs
        spmla.kv_cache_store(_bf16(rng, (n, D)), np.arange(n, dtype=np.int32), c, dtype="bf16")
        g.check(f"{layout} bs={bs} short array")
        short = Guarded(pb - 16)
        with pytest.raises(spmla.InvalidArgumentError, match="holds at least one page"):
            spmla.KVCache(short.view, layout, block_size=bs, **kw).num_pages
