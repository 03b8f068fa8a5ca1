//! Every operation of the contract on the CPU backend, against hand-computed
//! values or the independent reference in `common`, plus the error paths.
mod common;

use common::*;
use spmla::*;

fn cpu() -> Handle {
    Handle::cpu().expect("the built-in cpu backend is always available")
}

fn bf16s_to_f32(v: &[Bf16]) -> Vec<f32> {
    v.iter().map(|b| b.to_f32()).collect()
}

#[test]
fn versions_backends_and_dtypes() {
    assert_eq!(version_number(), sys::SPMLA_VERSION_NUMBER);
    assert_eq!(
        version_string().as_bytes(),
        &sys::SPMLA_VERSION_STRING[..sys::SPMLA_VERSION_STRING.len() - 1]
    );
    assert_eq!(abi_version().0 as u32, sys::SPMLA_ABI_VERSION_MAJOR);

    let bs = backends().unwrap();
    let cpu_info = bs
        .iter()
        .find(|b| b.name == "cpu")
        .expect("cpu backend listed");
    assert!(cpu_info.available, "cpu unavailable: {}", cpu_info.reason);
    assert!(cpu_info.device_count >= 1);
    let d = device_info("cpu", 0).unwrap();
    assert_eq!(d.arch, "cpu");
    assert_eq!(d.warp_size, 1);
    assert!(d.multiprocessor_count >= 1);

    for dt in [
        DType::Bf16,
        DType::Fp16,
        DType::Fp32,
        DType::Int32,
        DType::Int64,
        DType::Uint8,
        DType::Fp8E4m3fn,
        DType::Fp8E4m3fnuz,
        DType::Ue8m0,
    ] {
        assert_eq!(
            dt.size(),
            unsafe { sys::spmla_dtype_size(dt.to_raw()) },
            "{dt:?}"
        );
        assert_eq!(DType::from_raw(dt.to_raw()), Some(dt));
        assert_ne!(dt.name(), "invalid");
    }
    assert_eq!(DType::Fp8E4m3fn.name(), "fp8_e4m3fn");
    assert_eq!(
        Status::InvalidArgument.name(),
        "SPMLA_STATUS_INVALID_ARGUMENT"
    );
    assert_eq!(Status::from_raw(1234), Status::Unknown(1234));
    // ABI 1.1: a handle used from two threads at once.
    assert_eq!(Status::from_raw(11), Status::HandleBusy);
    assert_eq!(Status::HandleBusy.code(), 11);
    assert_eq!(Status::HandleBusy.name(), "SPMLA_STATUS_HANDLE_BUSY");
    assert_eq!(sys::SPMLA_VERSION_NUMBER, 10300);
    assert_eq!(sys::SPMLA_ABI_VERSION_MINOR, 3);
    // ABI 1.3: handle options.
    assert_eq!(HandleOption::BatchInvariant.to_raw(), 1);
    // ABI 1.2: the V4.1 layouts and their arrangement.
    assert_eq!(KvLayout::V41Fp8(KvArrangement::PerToken).to_raw(), 6);
    assert_eq!(KvLayout::V41Fp4(KvArrangement::PageBlocked).to_raw(), 7);
    assert_eq!(KvLayout::V41Fp4(KvArrangement::PageBlocked).arrangement_raw(), 2);
    assert_eq!(KvLayout::V4Fp8.arrangement_raw(), 0);
    assert_eq!(Status::Unknown(1234).name(), "SPMLA_STATUS_UNKNOWN");

    let h = cpu();
    assert_eq!(h.backend_name(), "cpu");
    assert_eq!(h.device().unwrap(), 0);
}

#[test]
fn handle_options() {
    let mut h = cpu();
    assert!(!h.batch_invariant().unwrap());
    h.set_batch_invariant(true).unwrap();
    assert!(h.batch_invariant().unwrap());
    assert_eq!(h.option(HandleOption::BatchInvariant).unwrap(), 1);
    let e = h.set_option(HandleOption::BatchInvariant, 2).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("expected 0 .. 1 for SPMLA_OPTION_BATCH_INVARIANT, got 2"), "{}", e.message());
    assert_eq!(h.option(HandleOption::BatchInvariant).unwrap(), 1);
    h.set_option(HandleOption::BatchInvariant, 0).unwrap();
    assert!(!h.batch_invariant().unwrap());
}

#[test]
fn kv_cache_geometry() {
    assert_eq!(KvCacheDesc::v32_fp8(3, 64).page_bytes().unwrap(), 656 * 64);
    assert_eq!(
        KvCacheDesc::v32_fp8(3, 64).size_bytes().unwrap(),
        3 * 656 * 64
    );
    // 584 · 64 = 37376, rounded up to a multiple of 576: 65 · 576 = 37440.
    assert_eq!(KvCacheDesc::v4_fp8(1, 64).page_bytes().unwrap(), 37440);
    assert_eq!(
        KvCacheDesc::bf16(512, 2, 5).page_bytes().unwrap(),
        2 * 512 * 5
    );
    assert_eq!(
        KvCacheDesc::fp8_per_tensor(576, Fp8Flavor::E4m3fnuz, 0.5, 2, 7)
            .page_bytes()
            .unwrap(),
        576 * 7
    );
    assert_eq!(
        KvCacheDesc::indexer_fp8(128, Fp8Flavor::E4m3fn, 4, 64)
            .page_bytes()
            .unwrap(),
        (128 + 4) * 64
    );
    let strided = KvCacheDesc::v32_fp8(3, 2).with_page_stride(2048);
    assert_eq!(strided.size_bytes().unwrap(), 3 * 2048);

    let e = KvCacheDesc {
        head_dim: 512,
        ..KvCacheDesc::v32_fp8(1, 64)
    }
    .page_bytes()
    .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("head_dim"), "{e}");
    let e = KvCacheDesc::bf16(576, 1, 1)
        .with_flavor(Fp8Flavor::E4m3fn)
        .size_bytes()
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    let e = KvCacheDesc::v32_fp8(1, 64)
        .with_page_stride(656 * 64 + 8)
        .size_bytes()
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);

    // Crate-side checks of borrowed memory.
    let mut small = HostBuffer::<u8>::zeroed(100);
    assert_eq!(
        KvCache::new(&mut small, KvCacheDesc::v32_fp8(1, 1))
            .unwrap_err()
            .status(),
        Status::InvalidArgument
    );
    let mut big = HostBuffer::<u8>::zeroed(700);
    assert_eq!(
        KvCache::new(&mut big[1..], KvCacheDesc::v32_fp8(1, 1))
            .unwrap_err()
            .status(),
        Status::Misaligned
    );
}

#[test]
fn store_and_gather_bf16() {
    let h = cpu();
    let d = 512usize;
    let desc = KvCacheDesc::bf16(d as i32, 4, 3); // 12 slots, odd block size
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let mut rng = Rng::new(1);
    let rows = rng.bf16s(5 * d, 3.0);
    // Slot 100 is beyond the cache and -1 is "skip": neither may be written.
    let slots = [7i32, 0, -1, 11, 100];
    {
        let mut cache = KvCache::new(&mut mem, desc).unwrap();
        h.kv_cache_store(
            &TensorRef::new(&rows, &[5, d as i64]).unwrap(),
            &TensorRef::new(&slots, &[5]).unwrap(),
            &mut cache,
            Stream::DEFAULT,
        )
        .unwrap();
    }
    // Slot 7 = page 2, offset 1: its bytes are the row's bf16 bits, in place.
    let page = 2 * d * 3;
    let off = 2 * page + 2 * d;
    for i in 0..d {
        let bits = u16::from_le_bytes([mem[off + 2 * i], mem[off + 2 * i + 1]]);
        assert_eq!(bits, rows[i].0);
    }
    // Slot 2 (never written) is still zero.
    assert!(mem[2 * 2 * d..3 * 2 * d].iter().all(|&b| b == 0));

    let cache = KvCache::new(&mut mem, desc).unwrap();
    let gslots = [0i32, 7, 11, -1, 5, 12];
    let mut out = HostBuffer::filled(6 * d, Bf16::from_f32(f32::NAN));
    h.kv_cache_gather(
        &cache,
        &TensorRef::new(&gslots, &[6]).unwrap(),
        &mut TensorMut::new(&mut out, &[6, d as i64]).unwrap(),
        Stream::DEFAULT,
    )
    .unwrap();
    assert_eq!(&out[0..d], &rows[d..2 * d]); // slot 0 <- row 1
    assert_eq!(&out[d..2 * d], &rows[0..d]); // slot 7 <- row 0
    assert_eq!(&out[2 * d..3 * d], &rows[3 * d..4 * d]); // slot 11 <- row 3
    for r in 3..6 {
        // -1, never written, and out of range (12 = 4 · 3): zero rows.
        assert!(
            out[r * d..(r + 1) * d].iter().all(|b| b.to_f32() == 0.0),
            "row {r}"
        );
    }
}

#[test]
fn v41_layouts_geometry_store_and_gather() {
    // Page bytes: 528 / 288 per token; page-blocked pages rounded up to a multiple of 512.
    let pt = KvArrangement::PerToken;
    let pbk = KvArrangement::PageBlocked;
    assert_eq!(KvCacheDesc::v41_fp8(pt, 2, 64).page_bytes().unwrap(), 64 * 528);
    assert_eq!(KvCacheDesc::v41_fp8(pbk, 2, 3).page_bytes().unwrap(), 2048);
    assert_eq!(KvCacheDesc::v41_fp4(pt, 2, 5).page_bytes().unwrap(), 5 * 288);
    assert_eq!(KvCacheDesc::v41_fp4(pbk, 2, 5).page_bytes().unwrap(), 1536);
    let e = KvCacheDesc::v41_fp4(pt, 2, 5)
        .with_flavor(Fp8Flavor::E4m3fnuz)
        .page_bytes()
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("E4M3FN"), "{e}");

    // V41_FP4, hand-computed: a tile [6, 3, -1.5, 0.25, 0 ...] has amax 6, scale 6/6 = 1 (E4M3FN
    // byte 0x38), codes 7, 5, 0xB (-1.5), 0 (0.25 ties to 0): bytes 0x57, 0x0B.
    let h = cpu();
    for arr in [pt, pbk] {
        let desc = KvCacheDesc::v41_fp4(arr, 2, 5);
        let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
        let mut rows = vec![Bf16::from_f32(0.0); 512];
        for (i, v) in [6.0f32, 3.0, -1.5, 0.25].iter().enumerate() {
            rows[i] = Bf16::from_f32(*v);
        }
        let slots = [7i32]; // page 1, offset 2
        {
            let mut cache = KvCache::new(&mut mem, desc).unwrap();
            h.kv_cache_store(
                &TensorRef::new(&rows, &[1, 512]).unwrap(),
                &TensorRef::new(&slots, &[1]).unwrap(),
                &mut cache,
                Stream::DEFAULT,
            )
            .unwrap();
        }
        let page = desc.page_bytes().unwrap();
        let (data, scales) = match arr {
            KvArrangement::PerToken => (page + 2 * 288, page + 2 * 288 + 256),
            KvArrangement::PageBlocked => (page + 2 * 256, page + 5 * 256 + 2 * 32),
        };
        assert_eq!(&mem[data..data + 2], &[0x57, 0x0B], "{arr:?}");
        assert_eq!(mem[scales], 0x38, "{arr:?}");
        // the other 31 tiles are zero: scale clamped to 2^-9 (byte 0x01), codes 0
        assert!(mem[scales + 1..scales + 32].iter().all(|&b| b == 0x01), "{arr:?}");
        assert!(mem[data + 2..data + 256].iter().all(|&b| b == 0), "{arr:?}");

        let cache = KvCache::new(&mut mem, desc).unwrap();
        let mut out = HostBuffer::filled(512, Bf16::from_f32(f32::NAN));
        h.kv_cache_gather(
            &cache,
            &TensorRef::new(&slots, &[1]).unwrap(),
            &mut TensorMut::new(&mut out, &[1, 512]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
        let got = bf16s_to_f32(&out[..]);
        assert_eq!(&got[..4], &[6.0, 3.0, -1.5, 0.0]);
        assert!(got[4..].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn store_v32_fp8_writes_the_flashmla_format() {
    let h = cpu();
    let desc = KvCacheDesc::v32_fp8(2, 5);
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let mut rng = Rng::new(2);
    let n = 3;
    let mut rows = rng.bf16s(n * 576, 1.0);
    // Tiles of very different magnitudes, and one all-zero tile (scale 2^-13 from the 1e-4 floor).
    for i in 0..128 {
        rows[i] = Bf16::from_f32(rows[i].to_f32() * 300.0);
        rows[576 + 128 + i] = Bf16::default();
        rows[2 * 576 + 256 + i] = Bf16::from_f32(rows[2 * 576 + 256 + i].to_f32() * 1e-3);
    }
    let slots = [9i64, 0, 4]; // int64 slot mapping
    {
        let mut cache = KvCache::new(&mut mem, desc).unwrap();
        h.kv_cache_store(
            &TensorRef::new(&rows, &[n as i64, 576]).unwrap(),
            &TensorRef::new(&slots, &[n as i64]).unwrap(),
            &mut cache,
            Stream::DEFAULT,
        )
        .unwrap();
    }
    let page = 656 * 5;
    for (r, &s) in slots.iter().enumerate() {
        let base = (s as usize / 5) * page + (s as usize % 5) * 656;
        let want = v32_encode(&rows[r * 576..(r + 1) * 576]);
        assert_eq!(&mem[base..base + 656], &want[..], "row {r} in slot {s}");
    }
    let zero_tile_scale = f32::from_le_bytes(mem[516..520].try_into().unwrap());
    assert_eq!(zero_tile_scale, 2f32.powi(-13));

    // Gather dequantizes exactly (fp8 · power of two fits bf16).
    let cache = KvCache::new(&mut mem, desc).unwrap();
    let gslots = [9i32, 0, 4];
    let mut out = HostBuffer::<Bf16>::zeroed(3 * 576);
    h.kv_cache_gather(
        &cache,
        &TensorRef::new(&gslots, &[3]).unwrap(),
        &mut TensorMut::new(&mut out, &[3, 576]).unwrap(),
        Stream::DEFAULT,
    )
    .unwrap();
    for r in 0..3 {
        let want = v32_decode(&v32_encode(&rows[r * 576..(r + 1) * 576]));
        assert_eq!(bf16s_to_f32(&out[r * 576..(r + 1) * 576]), want, "row {r}");
    }
}

/// Checks attention outputs against the reference, for tokens × heads.
#[allow(clippy::too_many_arguments)]
fn check_attention(
    q: &[Bf16],
    t_n: usize,
    h_n: usize,
    d: usize,
    keys_of: &dyn Fn(usize) -> Vec<Vec<f32>>,
    scale: f32,
    sink: Option<&[f32]>,
    out: &[Bf16],
    lse: &[f32],
    maxl: Option<&[f32]>,
) {
    for t in 0..t_n {
        let keys = keys_of(t);
        for hh in 0..h_n {
            let qv = bf16s_to_f32(&q[(t * h_n + hh) * d..(t * h_n + hh + 1) * d]);
            let (ro, rl, rm) = attend(&qv, &keys, scale, sink.map(|s| s[hh]));
            let o = bf16s_to_f32(&out[(t * h_n + hh) * 512..(t * h_n + hh + 1) * 512]);
            let l = lse[t * h_n + hh];
            if keys.is_empty() {
                assert!(
                    o.iter().all(|&x| x == 0.0),
                    "empty set: out must be 0 (t {t} h {hh})"
                );
                assert_eq!(l, f32::INFINITY, "empty set: lse must be +inf");
                if let Some(m) = maxl {
                    assert_eq!(m[t * h_n + hh], f32::NEG_INFINITY);
                }
                continue;
            }
            let err = rel_l2(&o, &ro);
            assert!(err < 1e-2, "out rel err {err} at t {t} h {hh}");
            assert!(
                ((l as f64) - rl).abs() < 1e-3 * rl.abs().max(1.0),
                "lse {l} vs {rl} at t {t} h {hh}"
            );
            if let Some(m) = maxl {
                let mv = m[t * h_n + hh] as f64;
                assert!(
                    (mv - rm).abs() < 1e-3 * rm.abs().max(1.0),
                    "max_logit {mv} vs {rm}"
                );
            }
        }
    }
}

#[test]
fn sparse_attention_bf16_cache() {
    let h = cpu();
    let (t_n, h_n, k, d, bs, pages) = (4usize, 5usize, 7usize, 576usize, 4, 6);
    let desc = KvCacheDesc::bf16(d as i32, pages, bs);
    let nslots = (pages as usize) * bs as usize;
    let mut rng = Rng::new(3);
    let kv_rows = rng.bf16s(nslots * d, 1.0);
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let all: Vec<i32> = (0..nslots as i32).collect();
    {
        let mut cache = KvCache::new(&mut mem, desc).unwrap();
        h.kv_cache_store(
            &TensorRef::new(&kv_rows, &[nslots as i64, d as i64]).unwrap(),
            &TensorRef::new(&all, &[nslots as i64]).unwrap(),
            &mut cache,
            Stream::DEFAULT,
        )
        .unwrap();
    }
    // Masked and out-of-range entries hold garbage: they must not count.
    #[rustfmt::skip]
    let indices: [i32; 28] = [
        3, 3, 17, -1, 999, 0, 23,      // duplicate counts twice; -1 and 999 are no key
        1, 2, 5, 8, 13, 21, 22,        // lengths 4: only the first four count
        -1, -5, 24, 1000, -1, -1, -1,  // no valid key at all: empty set
        6, 7, 9, 10, 11, 12, 14,       // lengths 0: empty set
    ];
    let lengths = [7i32, 4, 7, 0];
    let q = rng.bf16s(t_n * h_n * d, 1.0);
    let row = |s: i32| bf16s_to_f32(&kv_rows[s as usize * d..(s as usize + 1) * d]);
    let keys_of = |t: usize| -> Vec<Vec<f32>> {
        indices[t * k..(t + 1) * k]
            .iter()
            .take(lengths[t] as usize)
            .filter(|&&s| s >= 0 && (s as usize) < nslots)
            .map(|&s| row(s))
            .collect()
    };
    let cache = KvCache::new(&mut mem, desc).unwrap();
    for (scale, sink) in [
        (0.0f32, None),
        (0.07f32, Some([0.5f32, -1.0, 2.0, 0.0, 8.0])),
    ] {
        let mut out = HostBuffer::filled(t_n * h_n * 512, Bf16::from_f32(f32::NAN));
        let mut lse = vec![f32::NAN; t_n * h_n];
        let mut maxl = vec![f32::NAN; t_n * h_n];
        let sink_t;
        {
            let mut args = SparseAttentionArgs::new(
                TensorRef::new(&q, &[t_n as i64, h_n as i64, d as i64]).unwrap(),
                &cache,
                TensorRef::new(&indices, &[t_n as i64, k as i64]).unwrap(),
                TensorMut::new(&mut out, &[t_n as i64, h_n as i64, 512]).unwrap(),
                TensorMut::new(&mut lse, &[t_n as i64, h_n as i64]).unwrap(),
            );
            args.lengths = Some(TensorRef::new(&lengths, &[t_n as i64]).unwrap());
            args.max_logits = Some(TensorMut::new(&mut maxl, &[t_n as i64, h_n as i64]).unwrap());
            args.scale = scale;
            if let Some(s) = &sink {
                sink_t = *s;
                args.attn_sink = Some(TensorRef::new(&sink_t, &[h_n as i64]).unwrap());
            }
            assert!(h.sparse_attention_workspace_size(&args).is_ok());
            h.sparse_attention(&mut args, Stream::DEFAULT).unwrap();
        }
        let s = if scale == 0.0 {
            1.0 / (d as f32).sqrt()
        } else {
            scale
        };
        check_attention(
            &q,
            t_n,
            h_n,
            d,
            &keys_of,
            s,
            sink.as_ref().map(|s| &s[..]),
            &out,
            &lse,
            Some(&maxl),
        );
    }
}

#[test]
fn sparse_attention_v32_fp8_with_extra_source_and_sink() {
    let h = cpu();
    let (t_n, h_n, k, k2) = (3usize, 16usize, 37usize, 5usize);
    let (bs, pages) = (64, 3i64);
    let nslots = 64 * 3;
    let mut rng = Rng::new(4);
    // Main source: V3.2 FP8, written by kv_cache_store.
    let desc = KvCacheDesc::v32_fp8(pages, bs);
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let kv_rows = rng.bf16s(nslots * 576, 2.0);
    let all: Vec<i32> = (0..nslots as i32).collect();
    {
        let mut cache = KvCache::new(&mut mem, desc).unwrap();
        h.kv_cache_store(
            &TensorRef::new(&kv_rows, &[nslots as i64, 576]).unwrap(),
            &TensorRef::new(&all, &[nslots as i64]).unwrap(),
            &mut cache,
            Stream::DEFAULT,
        )
        .unwrap();
    }
    // Extra source: a small bf16 cache (e.g. a sliding window), block size 2.
    let edesc = KvCacheDesc::bf16(576, 4, 2);
    let mut emem = HostBuffer::<u8>::zeroed(edesc.size_bytes().unwrap());
    let erows = rng.bf16s(8 * 576, 1.0);
    let eall: Vec<i32> = (0..8).collect();
    {
        let mut ecache = KvCache::new(&mut emem, edesc).unwrap();
        h.kv_cache_store(
            &TensorRef::new(&erows, &[8, 576]).unwrap(),
            &TensorRef::new(&eall, &[8]).unwrap(),
            &mut ecache,
            Stream::DEFAULT,
        )
        .unwrap();
    }
    // Poison slot 5 of the main cache's NoPE bytes with NaN codes; it is only ever
    // referenced masked (beyond a length), so nothing may change.
    let poisoned = 5usize;
    for b in &mut mem[poisoned * 656..poisoned * 656 + 512] {
        *b = 0x7F;
    }
    let mut indices = vec![0i32; t_n * k];
    for (i, x) in indices.iter_mut().enumerate() {
        *x = loop {
            let s = rng.below(nslots as u64) as i32;
            if s as usize != poisoned {
                break s;
            }
        };
        if i % 11 == 3 {
            *x = -1;
        }
    }
    let lengths = [37i32, 20, 37];
    indices[k + 25] = poisoned as i32; // token 1, beyond its length 20
    let extra_indices: [i32; 15] = [0, 1, 2, 3, 4, 5, 6, 7, -1, -1, 7, 6, -1, 9, 3];
    let extra_lengths = [3i32, 5, 5];
    let q = rng.bf16s(t_n * h_n * 576, 1.0);
    let sink: Vec<f32> = (0..h_n).map(|i| i as f32 * 0.3 - 2.0).collect();

    let tok = |s: i32| {
        v32_decode(&v32_encode(
            &kv_rows[s as usize * 576..(s as usize + 1) * 576],
        ))
    };
    let erow = |s: i32| bf16s_to_f32(&erows[s as usize * 576..(s as usize + 1) * 576]);
    let keys_of = |t: usize| -> Vec<Vec<f32>> {
        let mut v: Vec<Vec<f32>> = indices[t * k..(t + 1) * k]
            .iter()
            .take(lengths[t] as usize)
            .filter(|&&s| s >= 0 && (s as usize) < nslots)
            .map(|&s| tok(s))
            .collect();
        v.extend(
            extra_indices[t * k2..(t + 1) * k2]
                .iter()
                .take(extra_lengths[t] as usize)
                .filter(|&&s| (0..8).contains(&s))
                .map(|&s| erow(s)),
        );
        v
    };

    let cache = KvCache::new(&mut mem, desc).unwrap();
    let ecache = KvCache::new(&mut emem, edesc).unwrap();
    let mut out = HostBuffer::filled(t_n * h_n * 512, Bf16::from_f32(f32::NAN));
    let mut lse = vec![f32::NAN; t_n * h_n];
    {
        let mut args = SparseAttentionArgs::new(
            TensorRef::new(&q, &[t_n as i64, h_n as i64, 576]).unwrap(),
            &cache,
            TensorRef::new(&indices, &[t_n as i64, k as i64]).unwrap(),
            TensorMut::new(&mut out, &[t_n as i64, h_n as i64, 512]).unwrap(),
            TensorMut::new(&mut lse, &[t_n as i64, h_n as i64]).unwrap(),
        );
        args.lengths = Some(TensorRef::new(&lengths, &[t_n as i64]).unwrap());
        args.extra = Some(ExtraKv {
            kv: &ecache,
            indices: TensorRef::new(&extra_indices, &[t_n as i64, k2 as i64]).unwrap(),
            lengths: Some(TensorRef::new(&extra_lengths, &[t_n as i64]).unwrap()),
        });
        args.attn_sink = Some(TensorRef::new(&sink, &[h_n as i64]).unwrap());
        let mut plan = h.plan_sparse_attention(&args, Stream::DEFAULT).unwrap();
        plan.run(&mut args, Stream::DEFAULT).unwrap();
    }
    assert!(
        out.iter().all(|x| !x.to_f32().is_nan()),
        "NaN reached the output"
    );
    check_attention(
        &q,
        t_n,
        h_n,
        576,
        &keys_of,
        1.0 / 24.0,
        Some(&sink),
        &out,
        &lse,
        None,
    );
}

#[test]
fn plan_is_reused_and_checked() {
    let h = cpu();
    let desc = KvCacheDesc::bf16(512, 2, 8);
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let mut rng = Rng::new(5);
    let rows = rng.bf16s(16 * 512, 1.0);
    let all: Vec<i32> = (0..16).collect();
    {
        let mut c = KvCache::new(&mut mem, desc).unwrap();
        h.kv_cache_store(
            &TensorRef::new(&rows, &[16, 512]).unwrap(),
            &TensorRef::new(&all, &[16]).unwrap(),
            &mut c,
            Stream::DEFAULT,
        )
        .unwrap();
    }
    let cache = KvCache::new(&mut mem, desc).unwrap();
    let idx = [1i32, 4, 9, 15, 0, 2];
    let q1 = rng.bf16s(2 * 3 * 512, 1.0);
    let q2 = rng.bf16s(2 * 3 * 512, 1.0);
    let mut out = HostBuffer::<Bf16>::zeroed(2 * 3 * 512);
    let mut lse = vec![0f32; 6];

    // Plan once with q1, run with q1 then q2 (same shapes): both must be right.
    fn mk(q: &HostBuffer<Bf16>) -> TensorRef<'_> {
        TensorRef::new(q, &[2, 3, 512]).unwrap()
    }
    let mut outs = Vec::new();
    {
        let mut args = SparseAttentionArgs::new(
            mk(&q1),
            &cache,
            TensorRef::new(&idx, &[2, 3]).unwrap(),
            TensorMut::new(&mut out, &[2, 3, 512]).unwrap(),
            TensorMut::new(&mut lse, &[2, 3]).unwrap(),
        );
        let mut plan = h.plan_sparse_attention(&args, Stream::DEFAULT).unwrap();
        plan.run(&mut args, Stream::DEFAULT).unwrap();
        let _ = plan.workspace_bytes();
        args.q = mk(&q2);
        plan.run(&mut args, Stream::DEFAULT).unwrap();
        outs.push(());
        // Other shapes: the plan refuses, replan accepts.
        args.indices = TensorRef::new(&idx, &[2, 3]).unwrap();
        args.lengths = Some(TensorRef::new(&[3i32, 1][..], &[2]).unwrap());
        let e = plan.run(&mut args, Stream::DEFAULT).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(e.message().starts_with("spmla-rs:"), "{e}");
        plan.replan(&args, Stream::DEFAULT).unwrap();
        plan.run(&mut args, Stream::DEFAULT).unwrap();
        args.lengths = None;
        plan.replan(&args, Stream::DEFAULT).unwrap();
        plan.run(&mut args, Stream::DEFAULT).unwrap();
    }
    let keys_of = |t: usize| -> Vec<Vec<f32>> {
        idx[t * 3..t * 3 + 3]
            .iter()
            .map(|&s| bf16s_to_f32(&rows[s as usize * 512..(s as usize + 1) * 512]))
            .collect()
    };
    let scale = 1.0 / (512f32).sqrt();
    check_attention(&q2, 2, 3, 512, &keys_of, scale, None, &out, &lse, None);
}

#[test]
fn indices_to_slots_hand_computed() {
    let h = cpu();
    #[rustfmt::skip]
    let positions: [i32; 12] = [
        0, 5, 9, -1,   // req 0: page table [5, 2, -1]
        11, 12, 4, 3,  // req 1: page table [7, 0, 3]
        0, 1, 2, 3,    // req 1 but token_valid = 0
    ];
    let token_to_req = [0i32, 1, 1];
    let block_table = [5i32, 2, -1, 7, 0, 3];
    let token_valid = [1u8, 1, 0];
    let mut slots = [99i32; 12];
    let mut lengths = [99i32; 3];
    let mut indptr = [99i32; 4];
    let mut ragged = [99i32; 12];
    {
        let mut args = IndicesToSlotsArgs::new(
            TensorRef::new(&positions, &[3, 4]).unwrap(),
            TensorRef::new(&token_to_req, &[3]).unwrap(),
            TensorRef::new(&block_table, &[2, 3]).unwrap(),
            4,
            TensorMut::new(&mut slots, &[3, 4]).unwrap(),
            TensorMut::new(&mut lengths, &[3]).unwrap(),
        );
        args.token_valid = Some(TensorRef::new(&token_valid, &[3]).unwrap());
        args.indptr = Some(TensorMut::new(&mut indptr, &[4]).unwrap());
        args.ragged_slots = Some(TensorMut::new(&mut ragged, &[12]).unwrap());
        h.indices_to_slots(&mut args, Stream::DEFAULT).unwrap();
    }
    // 0 -> 5·4+0; 5 -> page 2, 2·4+1; 9 -> table entry -1; 11 -> 3·4+3; 12 -> beyond
    // the table; 4 -> 0·4+0; 3 -> 7·4+3.
    assert_eq!(slots, [20, 9, -1, -1, 15, -1, 0, 31, -1, -1, -1, -1]);
    assert_eq!(lengths, [2, 3, 0]);
    assert_eq!(indptr, [0, 2, 5, 5]);
    assert_eq!(&ragged[..5], &[20, 9, 15, 0, 31]);
}

#[test]
fn window_indices_hand_computed() {
    let h = cpu();
    let block_table = [3i32, 1, 4, -1];
    let run = |positions: &[i32], ratio: i32, w: usize| -> (Vec<i32>, Vec<i32>) {
        let t = positions.len();
        let reqs = vec![0i32; t];
        let mut slots = vec![99i32; t * w];
        let mut lengths = vec![99i32; t];
        let mut args = WindowIndicesArgs {
            positions: TensorRef::new(positions, &[t as i64]).unwrap(),
            token_to_req: TensorRef::new(&reqs, &[t as i64]).unwrap(),
            block_table: TensorRef::new(&block_table, &[1, 4]).unwrap(),
            block_size: 2,
            ratio,
            slots: TensorMut::new(&mut slots, &[t as i64, w as i64]).unwrap(),
            lengths: TensorMut::new(&mut lengths, &[t as i64]).unwrap(),
        };
        h.window_indices(&mut args, Stream::DEFAULT).unwrap();
        (slots, lengths)
    };
    // Sliding window of 4 (ratio 1). Position p lives in page table[p / 2], offset p % 2.
    let (s, l) = run(&[5, 1, 7, -3], 1, 4);
    #[rustfmt::skip]
    assert_eq!(s, [
        2, 3, 8, 9,     // pos 5: hi 6, lo 2 -> positions 2..5
        6, 7, -1, -1,   // pos 1: hi 2, lo 0
        8, 9, -1, -1,   // pos 7: hi 8, lo 4; positions 6, 7 are in page -1
        -1, -1, -1, -1, // negative position: empty
    ]);
    assert_eq!(l, [4, 2, 4, 0]);
    // Compressed tokens with ratio 2: pos 5 -> hi 3, lo 0; pos 0 -> hi 0: empty.
    let (s, l) = run(&[5, 0], 2, 4);
    assert_eq!(s, [6, 7, 2, -1, -1, -1, -1, -1]);
    assert_eq!(l, [3, 0]);
}

fn fp8_codes(rng: &mut Rng, n: usize, amp: f32, fnuz: bool) -> HostBuffer<u8> {
    let mut b = HostBuffer::<u8>::zeroed(n);
    for x in b.iter_mut() {
        let v = rng.uniform() * amp;
        *x = if fnuz {
            Fp8E4m3fnuz::from_f32(v).0
        } else {
            Fp8E4m3fn::from_f32(v).0
        };
    }
    b
}

fn check_logit_row(got: &[f32], want: &[f64], what: &str) {
    let row_scale = want
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f64, |m, x| m.max(x.abs()));
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_infinite() {
            assert_eq!(*g as f64, *w, "{what} col {j}");
        } else {
            assert!(
                (*g as f64 - w).abs() <= 1e-3 * row_scale.max(1e-30) + 1e-6,
                "{what} col {j}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn indexer_logits_ragged_both_flavors() {
    let h = cpu();
    let mut ws = Workspace::new(&h);
    for fnuz in [false, true] {
        let (t_n, hi, di, s_n) = (3usize, 4usize, 64usize, 10usize);
        let mut rng = Rng::new(6 + fnuz as u64);
        let q = fp8_codes(&mut rng, t_n * hi * di, 8.0, fnuz);
        let k = fp8_codes(&mut rng, s_n * di, 8.0, fnuz);
        let k_scale: Vec<f32> = (0..s_n).map(|_| rng.uniform().abs() + 0.1).collect();
        let weights: Vec<f32> = (0..t_n * hi).map(|_| rng.uniform()).collect();
        let k_start = [0i32, 3, 5];
        let k_end = [10i32, 7, 5];
        // Logits rows padded to a stride of 12 ("row stride free").
        let mut logits = vec![f32::NAN; t_n * 12];
        let dt = if fnuz {
            DType::Fp8E4m3fnuz
        } else {
            DType::Fp8E4m3fn
        };
        {
            let mut args = IndexerLogitsArgs {
                q: TensorRef::from_bytes(&q, dt, &[t_n as i64, hi as i64, di as i64], None)
                    .unwrap(),
                k: TensorRef::from_bytes(&k, dt, &[s_n as i64, di as i64], None).unwrap(),
                k_scale: TensorRef::new(&k_scale, &[s_n as i64]).unwrap(),
                weights: TensorRef::new(&weights, &[t_n as i64, hi as i64]).unwrap(),
                k_start: TensorRef::new(&k_start, &[t_n as i64]).unwrap(),
                k_end: TensorRef::new(&k_end, &[t_n as i64]).unwrap(),
                logits: TensorMut::strided(&mut logits, &[t_n as i64, s_n as i64], Some(&[12, 1]))
                    .unwrap(),
            };
            h.indexer_logits(&mut args, &mut ws, Stream::DEFAULT)
                .unwrap();
        }
        for t in 0..t_n {
            let want: Vec<f64> = (0..s_n)
                .map(|j| {
                    if (j as i32) < k_start[t] || (j as i32) >= k_end[t] {
                        return f64::NEG_INFINITY;
                    }
                    (0..hi)
                        .map(|hh| {
                            let dot: f64 = (0..di)
                                .map(|i| {
                                    fp8(q[(t * hi + hh) * di + i], fnuz) as f64
                                        * fp8(k[j * di + i], fnuz) as f64
                                })
                                .sum();
                            weights[t * hi + hh] as f64 * (k_scale[j] as f64 * dot).max(0.0)
                        })
                        .sum()
                })
                .collect();
            check_logit_row(
                &logits[t * 12..t * 12 + s_n],
                &want,
                &format!("fnuz {fnuz} row {t}"),
            );
            // The padding between rows is not part of the tensor: untouched.
            assert!(logits[t * 12 + s_n..(t + 1) * 12]
                .iter()
                .all(|x| x.is_nan()));
        }
    }
}

#[test]
fn indexer_logits_paged_decode() {
    let h = cpu();
    let (b_n, n_n, hi, di, bs, pages, c) = (2usize, 2usize, 4usize, 64usize, 4usize, 5i64, 8usize);
    let desc = KvCacheDesc::indexer_fp8(di as i32, Fp8Flavor::E4m3fn, pages, bs as i32);
    let page_bytes = desc.page_bytes().unwrap();
    assert_eq!(page_bytes, (di + 4) * bs);
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let mut rng = Rng::new(8);
    // Fill the cache by hand: per page bs·Di fp8 bytes, then bs fp32 scales.
    for p in 0..pages as usize {
        for o in 0..bs {
            for i in 0..di {
                mem[p * page_bytes + o * di + i] = Fp8E4m3fn::from_f32(rng.uniform() * 4.0).0;
            }
            let s = rng.uniform().abs() + 0.05;
            let at = p * page_bytes + bs * di + 4 * o;
            mem[at..at + 4].copy_from_slice(&s.to_le_bytes());
        }
    }
    let block_table = [3i32, 0, 4, 1, 2, -1];
    let context_lens = [6i32, 3];
    let q = fp8_codes(&mut rng, b_n * n_n * hi * di, 4.0, false);
    let weights: Vec<f32> = (0..b_n * n_n * hi).map(|_| rng.uniform()).collect();
    let mut logits = vec![f32::NAN; b_n * n_n * c];
    let cache = KvCache::new(&mut mem, desc).unwrap();
    let mut ws = Workspace::new(&h);
    {
        let mut args = IndexerLogitsPagedArgs {
            q: TensorRef::from_bytes(
                &q,
                DType::Fp8E4m3fn,
                &[b_n as i64, n_n as i64, hi as i64, di as i64],
                None,
            )
            .unwrap(),
            cache: &cache,
            block_table: TensorRef::new(&block_table, &[2, 3]).unwrap(),
            context_lens: TensorRef::new(&context_lens, &[2]).unwrap(),
            weights: TensorRef::new(&weights, &[(b_n * n_n) as i64, hi as i64]).unwrap(),
            logits: TensorMut::new(&mut logits, &[(b_n * n_n) as i64, c as i64]).unwrap(),
        };
        h.indexer_logits_paged(&mut args, &mut ws, Stream::DEFAULT)
            .unwrap();
    }
    for b in 0..b_n {
        for i in 0..n_n {
            let r = b * n_n + i;
            let limit = context_lens[b] as usize - n_n + i + 1;
            let want: Vec<f64> = (0..c)
                .map(|j| {
                    if j >= limit {
                        return f64::NEG_INFINITY;
                    }
                    let page = block_table[b * 3 + j / bs] as usize;
                    let base = page * page_bytes + (j % bs) * di;
                    let at = page * page_bytes + bs * di + 4 * (j % bs);
                    let s = f32::from_le_bytes(mem[at..at + 4].try_into().unwrap()) as f64;
                    (0..hi)
                        .map(|hh| {
                            let dot: f64 = (0..di)
                                .map(|x| {
                                    fp8(q[(r * hi + hh) * di + x], false) as f64
                                        * fp8(mem[base + x], false) as f64
                                })
                                .sum();
                            weights[r * hi + hh] as f64 * (s * dot).max(0.0)
                        })
                        .sum()
                })
                .collect();
            check_logit_row(
                &logits[r * c..(r + 1) * c],
                &want,
                &format!("row ({b}, {i})"),
            );
        }
    }
}

#[test]
fn indexer_cache_store_scales_per_token() {
    let h = cpu();
    let desc = KvCacheDesc::indexer_fp8(64, Fp8Flavor::E4m3fn, 2, 4);
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let mut rng = Rng::new(9);
    let k = rng.bf16s(2 * 64, 5.0);
    let slots = [6i32, 1];
    {
        let mut cache = KvCache::new(&mut mem, desc).unwrap();
        h.kv_cache_store(
            &TensorRef::new(&k, &[2, 64]).unwrap(),
            &TensorRef::new(&slots, &[2]).unwrap(),
            &mut cache,
            Stream::DEFAULT,
        )
        .unwrap();
    }
    let page_bytes = (64 + 4) * 4;
    for (r, &s) in slots.iter().enumerate() {
        let (p, o) = (s as usize / 4, s as usize % 4);
        let row = bf16s_to_f32(&k[r * 64..(r + 1) * 64]);
        let amax = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let at = p * page_bytes + 4 * 64 + 4 * o;
        let scale = f32::from_le_bytes(mem[at..at + 4].try_into().unwrap());
        assert!(
            (scale - amax / 448.0).abs() <= 1e-6 * scale,
            "scale {scale} vs {}",
            amax / 448.0
        );
        for i in 0..64 {
            let deq = Fp8E4m3fn(mem[p * page_bytes + o * 64 + i]).to_f32() * scale;
            // One FP8 rounding: relative error at most 2^-4 of the value, or a
            // subnormal step.
            assert!((deq - row[i]).abs() <= row[i].abs() / 16.0 + scale * 2f32.powi(-9));
        }
    }
}

#[test]
fn topk_per_row_hand_computed() {
    let h = cpu();
    let mut ws = Workspace::new(&h);
    let nan = f32::NAN;
    #[rustfmt::skip]
    let logits: [f32; 18] = [
        1.0, 5.0, 3.0, 5.0, nan, 2.0,   // ties at 5 (cols 1, 3); NaN ranks last
        0.0, 0.0, 7.0, -1.0, 7.0, 9.0,  // range [2, 5): three columns
        4.0, 4.0, 4.0, 4.0, 1.0, 2.0,   // range [4, 6): two columns, then -1
    ];
    let starts = [0i32, 2, 4];
    let ends = [6i32, 5, 6];
    let mut idx = [99i32; 9];
    {
        let mut args = TopkPerRowArgs::new(
            TensorRef::new(&logits, &[3, 6]).unwrap(),
            TensorMut::new(&mut idx, &[3, 3]).unwrap(),
        );
        args.row_starts = Some(TensorRef::new(&starts, &[3]).unwrap());
        args.row_ends = Some(TensorRef::new(&ends, &[3]).unwrap());
        h.topk_per_row(&mut args, &mut ws, Stream::DEFAULT).unwrap();
    }
    assert_eq!(idx, [1, 2, 3, 0, 1, 2, 0, 1, -1]);

    // Equal values: ties go to the smaller column.
    let flat = [2.0f32; 6];
    let mut idx2 = [99i32; 2];
    {
        let mut args = TopkPerRowArgs::new(
            TensorRef::new(&flat, &[1, 6]).unwrap(),
            TensorMut::new(&mut idx2, &[1, 2]).unwrap(),
        );
        h.topk_per_row(&mut args, &mut ws, Stream::DEFAULT).unwrap();
    }
    assert_eq!(idx2, [0, 1]);

    // Paged decode rule, next_n 2: row r covers [0, ctx[r/2] - 2 + r%2 + 1).
    #[rustfmt::skip]
    let l2: [f32; 24] = [
        9.0, 1.0, 8.0, 7.0, 9.9, 9.9,   // ctx 3 -> [0, 2): cols 0, 1
        1.0, 2.0, 3.0, 0.0, 9.9, 9.9,   // [0, 3): cols 1, 2
        5.0, 4.0, 3.0, 2.0, 1.0, 9.9,   // ctx 5 -> [0, 4): cols 0, 1
        0.0, 1.0, 0.0, 2.0, 3.0, 9.9,   // [0, 5): cols 3, 4
    ];
    let ctx = [3i32, 5];
    let mut idx3 = [99i32; 8];
    {
        let mut args = TopkPerRowArgs::new(
            TensorRef::new(&l2, &[4, 6]).unwrap(),
            TensorMut::new(&mut idx3, &[4, 2]).unwrap(),
        );
        args.context_lens = Some(TensorRef::new(&ctx, &[2]).unwrap());
        args.next_n = 2;
        h.topk_per_row(&mut args, &mut ws, Stream::DEFAULT).unwrap();
    }
    assert_eq!(idx3, [0, 1, 1, 2, 0, 1, 3, 4]);
}

#[test]
fn errors_carry_status_and_message_and_write_nothing() {
    let h = cpu();
    let desc = KvCacheDesc::bf16(512, 1, 4);
    let mut mem = HostBuffer::<u8>::zeroed(desc.size_bytes().unwrap());
    let cache = KvCache::new(&mut mem, desc).unwrap();
    // q in fp32 instead of bf16.
    let q = HostBuffer::<f32>::zeroed(2 * 512);
    let idx = [0i32, 1];
    let mut out = HostBuffer::filled(2 * 512, Bf16(0x1234));
    let mut lse = [42f32; 2];
    {
        let mut args = SparseAttentionArgs::new(
            TensorRef::new(&q, &[1, 2, 512]).unwrap(),
            &cache,
            TensorRef::new(&idx, &[1, 2]).unwrap(),
            TensorMut::new(&mut out, &[1, 2, 512]).unwrap(),
            TensorMut::new(&mut lse, &[1, 2]).unwrap(),
        );
        let e = h.sparse_attention(&mut args, Stream::DEFAULT).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(e.message().contains("q"), "message names the argument: {e}");
        assert!(
            e.message().contains("bf16"),
            "message says what was expected: {e}"
        );
        assert!(
            e.to_string().starts_with("SPMLA_STATUS_INVALID_ARGUMENT: "),
            "{e}"
        );
    }
    assert!(out.iter().all(|&b| b == Bf16(0x1234)) && lse == [42.0, 42.0]);

    // The head dim of q must match the cache's.
    let q576 = HostBuffer::<Bf16>::zeroed(576);
    let mut out1 = HostBuffer::<Bf16>::zeroed(512);
    let mut lse1 = [0f32; 1];
    let args = SparseAttentionArgs::new(
        TensorRef::new(&q576, &[1, 1, 576]).unwrap(),
        &cache,
        TensorRef::new(&idx[..1], &[1, 1]).unwrap(),
        TensorMut::new(&mut out1, &[1, 1, 512]).unwrap(),
        TensorMut::new(&mut lse1, &[1, 1]).unwrap(),
    );
    assert_eq!(
        h.plan_sparse_attention(&args, Stream::DEFAULT)
            .unwrap_err()
            .status(),
        Status::InvalidArgument
    );

    // A misaligned q (bf16 data at an odd multiple of 2 bytes).
    let qa = HostBuffer::<Bf16>::zeroed(513);
    let args = SparseAttentionArgs::new(
        TensorRef::new(&qa[1..], &[1, 1, 512]).unwrap(),
        &cache,
        TensorRef::new(&idx[..1], &[1, 1]).unwrap(),
        TensorMut::new(&mut out1, &[1, 1, 512]).unwrap(),
        TensorMut::new(&mut lse1, &[1, 1]).unwrap(),
    );
    assert_eq!(
        h.plan_sparse_attention(&args, Stream::DEFAULT)
            .unwrap_err()
            .status(),
        Status::Misaligned
    );

    // Unknown backend.
    let e = Handle::new("no-such-backend", 0).unwrap_err();
    assert_ne!(e.status(), Status::Success);
    assert!(!e.message().is_empty());
    assert!(Handle::new("cpu\0x", 0).is_err());

    // Crate-side checks: a slice too short for the shape, too many dims, negative strides.
    let small = [0f32; 5];
    let e = TensorRef::new(&small, &[2, 3]).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().starts_with("spmla-rs:"));
    assert!(TensorRef::new(&small, &[1; 9]).is_err());
    assert!(TensorRef::strided(&small, &[2, 2], Some(&[-1, 1])).is_err());
    assert!(TensorRef::strided(&small, &[2, 2], Some(&[3, 1])).is_ok());
    assert!(TensorRef::strided(&small, &[2, 2], Some(&[4, 1])).is_err());

    // A workspace of another handle.
    let h2 = cpu();
    let mut ws2 = Workspace::new(&h2);
    let l = [1f32, 2.0];
    let mut i = [0i32; 1];
    let mut args = TopkPerRowArgs::new(
        TensorRef::new(&l, &[1, 2]).unwrap(),
        TensorMut::new(&mut i, &[1, 1]).unwrap(),
    );
    assert!(h
        .topk_per_row(&mut args, &mut ws2, Stream::DEFAULT)
        .is_err());
    // k = 0 columns in indices is invalid in the library.
    let mut none: [i32; 0] = [];
    args.indices = TensorMut::new(&mut none, &[1, 0]).unwrap();
    let mut ws = Workspace::new(&h);
    assert_eq!(
        h.topk_per_row(&mut args, &mut ws, Stream::DEFAULT)
            .unwrap_err()
            .status(),
        Status::InvalidArgument
    );
}

#[test]
fn device_buffers_events_and_views_on_cpu() {
    let h = cpu();
    let mut buf = h.alloc(64 * 4).unwrap();
    assert_eq!(buf.as_ptr() as usize % 256, 0);
    let src: Vec<f32> = (0..64).map(|i| i as f32 - 10.0).collect();
    buf.copy_from_host(0, &src).unwrap();
    let mut back = vec![0f32; 64];
    buf.copy_to_host(0, &mut back).unwrap();
    assert_eq!(back, src);
    assert!(buf.copy_from_host(4, &src).is_err());

    // A top-k over device memory through safe views of the buffer.
    let mut out = h.alloc(4 * 3 * 4).unwrap();
    {
        let logits = buf.tensor(DType::Fp32, &[4, 16]).unwrap();
        let mut args = TopkPerRowArgs::new(logits, out.tensor_mut(DType::Int32, &[4, 3]).unwrap());
        let mut ws = Workspace::new(&h);
        h.topk_per_row(&mut args, &mut ws, Stream::DEFAULT).unwrap();
    }
    let mut idx = [0i32; 12];
    out.copy_to_host(0, &mut idx).unwrap();
    assert_eq!(idx, [13, 14, 15, 13, 14, 15, 13, 14, 15, 13, 14, 15]);
    assert!(out.tensor(DType::Int32, &[4, 4]).is_err());

    let mut z = h.alloc(16).unwrap();
    z.fill(0xAB, Stream::DEFAULT).unwrap();
    let mut zb = [0u8; 16];
    z.copy_to_host(0, &mut zb).unwrap();
    assert_eq!(zb, [0xAB; 16]);

    let (a, b) = (h.event().unwrap(), h.event().unwrap());
    a.record(Stream::DEFAULT).unwrap();
    b.record(Stream::DEFAULT).unwrap();
    assert!(a.elapsed_ms(&b).unwrap() >= 0.0);
    h.synchronize(Stream::DEFAULT).unwrap();
}

#[test]
fn handles_on_two_threads_at_once() {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|n| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let h = Handle::cpu().unwrap();
                let mut ws = Workspace::new(&h);
                for it in 0..50 {
                    let l: Vec<f32> = (0..32).map(|i| ((i * 7 + it + n) % 32) as f32).collect();
                    let mut idx = [0i32; 4];
                    let mut args = TopkPerRowArgs::new(
                        TensorRef::new(&l, &[1, 32]).unwrap(),
                        TensorMut::new(&mut idx, &[1, 4]).unwrap(),
                    );
                    h.topk_per_row(&mut args, &mut ws, Stream::DEFAULT).unwrap();
                    let mut want: Vec<i32> = (0..32).filter(|&i| l[i as usize] >= 28.0).collect();
                    want.sort();
                    assert_eq!(idx.to_vec(), want);
                    // An error on this thread leaves the other thread's message alone.
                    let e = Handle::new("no-such-backend", n).unwrap_err();
                    assert!(!e.message().is_empty());
                }
                drop(ws);
                h // handles are Send: hand it back to the main thread
            })
        })
        .collect();
    for t in threads {
        let h = t.join().unwrap();
        assert_eq!(h.backend_name(), "cpu");
    }
}
