//! One DeepSeek-V3.2 decode step on the CPU backend, the way an engine runs it:
//!
//! 1. the new tokens' KV rows and indexer keys go into the paged caches
//!    (`kv_cache_store`, slot mapping from the block table with `indices_to_slots`);
//! 2. the lightning indexer scores every earlier position (`indexer_logits_paged`)
//!    and `topk_per_row` keeps the best K per token (the paged decode rule);
//! 3. `indices_to_slots` turns the chosen positions into slot ids and lengths;
//! 4. sparse attention is planned once and run over the V3.2 FP8 cache.
//!
//! The output is checked against a small f64 reference computed from the
//! dequantized rows (`kv_cache_gather`). Run with
//! `SPMLA_DIR=<build>/lib cargo run --offline --example decode_step`.
use spmla::*;

const D: usize = 576; // D_qk (512 NoPE + 64 RoPE)
const DV: usize = 512; // D_v
const H: usize = 16; // query heads on this tensor-parallel rank
const HI: usize = 64; // indexer heads
const DI: usize = 128; // indexer head dim
const BS: i32 = 64; // tokens per page
const TOPK: usize = 128; // index-list width (2048 in the model; small here)
const NEXT_N: usize = 2; // tokens per request (MTP)

/// splitmix64 in [-1, 1).
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn bf16s(&mut self, n: usize) -> HostBuffer<Bf16> {
        let mut b = HostBuffer::zeroed(n);
        b.iter_mut()
            .for_each(|x| *x = Bf16::from_f32(self.uniform()));
        b
    }
}

fn main() -> Result<()> {
    let h = Handle::cpu()?;
    println!(
        "spmla {} (ABI {:?}) on backend {}",
        version_string(),
        abi_version(),
        h.backend_name()
    );
    let s = Stream::DEFAULT;
    let mut rng = Rng(2025);

    // Two requests with 300 and 90 tokens of context, the last NEXT_N of each new.
    let context_lens = [300i32, 90];
    let b_n = context_lens.len();
    let t_n = b_n * NEXT_N;
    let num_pages = 12i64;
    let max_pages = 5usize;
    // Each request's pages, scattered over the cache.
    let block_table: [i32; 10] = [7, 2, 11, 4, 9, 0, 5, 10, 3, 1];

    let kv_desc = KvCacheDesc::v32_fp8(num_pages, BS);
    let ix_desc = KvCacheDesc::indexer_fp8(DI as i32, Fp8Flavor::E4m3fn, num_pages, BS);
    let mut kv_mem = HostBuffer::<u8>::zeroed(kv_desc.size_bytes()?);
    let mut ix_mem = HostBuffer::<u8>::zeroed(ix_desc.size_bytes()?);
    let mut kv_cache = KvCache::new(&mut kv_mem, kv_desc)?;
    let mut ix_cache = KvCache::new(&mut ix_mem, ix_desc)?;

    // --- 1. store every context token (history and the new tokens) -------------
    // Request-local positions 0..len of each request, as a [tokens, 1] list.
    let mut positions = Vec::new();
    let mut token_to_req = Vec::new();
    for (r, &len) in context_lens.iter().enumerate() {
        for p in 0..len {
            positions.push(p);
            token_to_req.push(r as i32);
        }
    }
    let n = positions.len();
    let mut slot_mapping = vec![0i32; n];
    let mut counts = vec![0i32; n];
    h.indices_to_slots(
        &mut IndicesToSlotsArgs::new(
            TensorRef::new(&positions, &[n as i64, 1])?,
            TensorRef::new(&token_to_req, &[n as i64])?,
            TensorRef::new(&block_table, &[b_n as i64, max_pages as i64])?,
            BS,
            TensorMut::new(&mut slot_mapping, &[n as i64, 1])?,
            TensorMut::new(&mut counts, &[n as i64])?,
        ),
        s,
    )?;
    let kv_rows = rng.bf16s(n * D);
    let ix_rows = rng.bf16s(n * DI);
    let slots_t = TensorRef::new(&slot_mapping, &[n as i64])?;
    h.kv_cache_store(
        &TensorRef::new(&kv_rows, &[n as i64, D as i64])?,
        &slots_t,
        &mut kv_cache,
        s,
    )?;
    h.kv_cache_store(
        &TensorRef::new(&ix_rows, &[n as i64, DI as i64])?,
        &slots_t,
        &mut ix_cache,
        s,
    )?;

    // --- 2. indexer logits and top-k (paged decode rule) -------------------------
    let c = *context_lens.iter().max().unwrap() as usize;
    let mut ix_q = HostBuffer::<Fp8E4m3fn>::zeroed(t_n * HI * DI);
    ix_q.iter_mut()
        .for_each(|x| *x = Fp8E4m3fn::from_f32(rng.uniform() * 4.0));
    let weights: Vec<f32> = (0..t_n * HI).map(|_| rng.uniform() * 0.1).collect();
    let mut logits = vec![0f32; t_n * c];
    let mut ws = Workspace::new(&h);
    h.indexer_logits_paged(
        &mut IndexerLogitsPagedArgs {
            q: TensorRef::new(&ix_q, &[b_n as i64, NEXT_N as i64, HI as i64, DI as i64])?,
            cache: &ix_cache,
            block_table: TensorRef::new(&block_table, &[b_n as i64, max_pages as i64])?,
            context_lens: TensorRef::new(&context_lens, &[b_n as i64])?,
            weights: TensorRef::new(&weights, &[t_n as i64, HI as i64])?,
            logits: TensorMut::new(&mut logits, &[t_n as i64, c as i64])?,
        },
        &mut ws,
        s,
    )?;
    let mut topk = vec![0i32; t_n * TOPK];
    let mut args = TopkPerRowArgs::new(
        TensorRef::new(&logits, &[t_n as i64, c as i64])?,
        TensorMut::new(&mut topk, &[t_n as i64, TOPK as i64])?,
    );
    args.context_lens = Some(TensorRef::new(&context_lens, &[b_n as i64])?);
    args.next_n = NEXT_N as i32;
    h.topk_per_row(&mut args, &mut ws, s)?;

    // --- 3. positions -> slot ids ------------------------------------------------
    let tok_req: Vec<i32> = (0..t_n).map(|t| (t / NEXT_N) as i32).collect();
    let mut indices = vec![0i32; t_n * TOPK];
    let mut lengths = vec![0i32; t_n];
    h.indices_to_slots(
        &mut IndicesToSlotsArgs::new(
            TensorRef::new(&topk, &[t_n as i64, TOPK as i64])?,
            TensorRef::new(&tok_req, &[t_n as i64])?,
            TensorRef::new(&block_table, &[b_n as i64, max_pages as i64])?,
            BS,
            TensorMut::new(&mut indices, &[t_n as i64, TOPK as i64])?,
            TensorMut::new(&mut lengths, &[t_n as i64])?,
        ),
        s,
    )?;
    println!("tokens {t_n}, heads {H}, top-k {TOPK}, valid keys per token {lengths:?}");

    // --- 4. plan once, run (every layer would reuse the plan) --------------------
    let q = rng.bf16s(t_n * H * D);
    let mut out = HostBuffer::<Bf16>::zeroed(t_n * H * DV);
    let mut lse = vec![0f32; t_n * H];
    {
        let mut args = SparseAttentionArgs::new(
            TensorRef::new(&q, &[t_n as i64, H as i64, D as i64])?,
            &kv_cache,
            TensorRef::new(&indices, &[t_n as i64, TOPK as i64])?,
            TensorMut::new(&mut out, &[t_n as i64, H as i64, DV as i64])?,
            TensorMut::new(&mut lse, &[t_n as i64, H as i64])?,
        );
        args.lengths = Some(TensorRef::new(&lengths, &[t_n as i64])?);
        let mut plan = h.plan_sparse_attention(&args, s)?;
        println!("plan workspace: {} bytes", plan.workspace_bytes());
        plan.run(&mut args, s)?;
    }

    // --- check against an f64 reference over the dequantized rows ----------------
    let mut worst = 0f64;
    for t in 0..t_n {
        let len = lengths[t] as usize;
        let mut rows = HostBuffer::<Bf16>::zeroed(len * D);
        h.kv_cache_gather(
            &kv_cache,
            &TensorRef::new(&indices[t * TOPK..t * TOPK + len], &[len as i64])?,
            &mut TensorMut::new(&mut rows, &[len as i64, D as i64])?,
            s,
        )?;
        for hh in 0..H {
            let qv = &q[(t * H + hh) * D..(t * H + hh + 1) * D];
            let logit: Vec<f64> = (0..len)
                .map(|j| {
                    let k = &rows[j * D..(j + 1) * D];
                    qv.iter()
                        .zip(k)
                        .map(|(a, b)| a.to_f32() as f64 * b.to_f32() as f64)
                        .sum::<f64>()
                        / (D as f64).sqrt()
                })
                .collect();
            let m = logit.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ref_lse = m + logit.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            let (mut num, mut den) = (0f64, 0f64);
            for i in 0..DV {
                let r: f64 = (0..len)
                    .map(|j| (logit[j] - ref_lse).exp() * rows[j * D + i].to_f32() as f64)
                    .sum();
                let o = out[(t * H + hh) * DV + i].to_f32() as f64;
                num += (o - r) * (o - r);
                den += r * r;
            }
            let err = (num / den).sqrt();
            worst = worst.max(err);
            let dl = (lse[t * H + hh] as f64 - ref_lse).abs();
            if err >= 1e-2 || dl >= 1e-3 * ref_lse.abs().max(1.0) {
                return Err(Error::new(
                    Status::Internal,
                    format!("token {t} head {hh}: rel err {err}, lse diff {dl}"),
                ));
            }
        }
    }
    println!("decode step OK: max relative L2 error vs reference {worst:.2e}");
    Ok(())
}
