//! The operations of the contract: argument structs and the `Handle` methods
//! that run them, plus [`Plan`] for sparse attention.
use std::ptr;

use spmla_sys as sys;

use crate::error::{check, Error, Result};
use crate::handle::{Handle, Stream, Workspace};
use crate::kv::KvCache;
use crate::tensor::{TensorMut, TensorRef};

fn opt(t: &Option<TensorRef<'_>>) -> *const sys::spmla_tensor_t {
    t.as_ref().map_or(ptr::null(), |t| t.as_raw() as *const _)
}

fn opt_mut(t: &Option<TensorMut<'_>>) -> *const sys::spmla_tensor_t {
    t.as_ref().map_or(ptr::null(), |t| t.as_raw() as *const _)
}

/// A second KV source of [`SparseAttentionArgs`] (e.g. DeepSeek-V4's sliding window).
#[derive(Debug)]
pub struct ExtraKv<'a> {
    /// The cache (same D_qk as the main one, any layout).
    pub kv: &'a KvCache<'a>,
    /// `[T, K2]` int32 slot ids.
    pub indices: TensorRef<'a>,
    /// Optional `[T]` int32: list positions below `lengths[t]` count.
    pub lengths: Option<TensorRef<'a>>,
}

/// Arguments of sparse attention (operation 1): for each token and head, softmax
/// attention over the valid slots of `indices` (and of the extra source), with
/// optional lengths and attention sink. Empty sets give `out = 0`, `lse = +inf`,
/// `max_logits = -inf`.
#[derive(Debug)]
pub struct SparseAttentionArgs<'a> {
    /// `[T, H, D_qk]` bf16, H 1..128.
    pub q: TensorRef<'a>,
    /// Main KV source, head dim D_qk.
    pub kv: &'a KvCache<'a>,
    /// `[T, K]` int32 slot ids (negative or out of range = no key).
    pub indices: TensorRef<'a>,
    /// Optional `[T]` int32: list positions below `lengths[t]` count.
    pub lengths: Option<TensorRef<'a>>,
    /// Optional second source.
    pub extra: Option<ExtraKv<'a>>,
    /// Optional `[H]` fp32 attention sink.
    pub attn_sink: Option<TensorRef<'a>>,
    /// Softmax scale; 0 means `1/sqrt(D_qk)`.
    pub scale: f32,
    /// Output `[T, H, 512]` bf16.
    pub out: TensorMut<'a>,
    /// Output `[T, H]` fp32 log-sum-exp (natural log, without the sink).
    pub lse: TensorMut<'a>,
    /// Optional output `[T, H]` fp32: the largest logit.
    pub max_logits: Option<TensorMut<'a>>,
}

impl<'a> SparseAttentionArgs<'a> {
    /// The required arguments; the optional ones are `None` and the scale is the
    /// default `1/sqrt(D_qk)`.
    pub fn new(
        q: TensorRef<'a>,
        kv: &'a KvCache<'a>,
        indices: TensorRef<'a>,
        out: TensorMut<'a>,
        lse: TensorMut<'a>,
    ) -> SparseAttentionArgs<'a> {
        SparseAttentionArgs {
            q,
            kv,
            indices,
            lengths: None,
            extra: None,
            attn_sink: None,
            scale: 0.0,
            out,
            lse,
            max_logits: None,
        }
    }

    /// The C arguments; they point into `self`.
    pub fn to_raw(&self) -> sys::spmla_sparse_attention_args_t {
        let (extra_kv, extra_indices, extra_lengths) = match &self.extra {
            Some(e) => (
                e.kv.as_raw() as *const _,
                e.indices.as_raw() as *const _,
                opt(&e.lengths),
            ),
            None => (ptr::null(), ptr::null(), ptr::null()),
        };
        sys::spmla_sparse_attention_args_t {
            struct_size: std::mem::size_of::<sys::spmla_sparse_attention_args_t>(),
            q: self.q.as_raw(),
            kv: self.kv.as_raw(),
            indices: self.indices.as_raw(),
            lengths: opt(&self.lengths),
            extra_kv,
            extra_indices,
            extra_lengths,
            attn_sink: opt(&self.attn_sink),
            scale: self.scale,
            out: self.out.as_raw(),
            lse: self.lse.as_raw(),
            max_logits: opt_mut(&self.max_logits),
        }
    }

    /// What a plan depends on: shapes, layouts, which optional inputs are present,
    /// and the lengths tensors' addresses.
    fn signature(&self) -> Vec<i64> {
        let mut s = Vec::new();
        // Shapes of every tensor the schedule may depend on; for the lengths
        // tensors also their address (a plan may have read their contents).
        let mut push = |t: Option<&TensorRef<'_>>, address: bool| match t {
            Some(t) => {
                s.push(t.shape().len() as i64);
                s.extend_from_slice(t.shape());
                if address {
                    s.push(t.as_ptr() as usize as i64);
                }
            }
            None => s.push(-1),
        };
        push(Some(&self.q), false);
        push(Some(&self.indices), false);
        push(self.lengths.as_ref(), true);
        push(self.extra.as_ref().map(|e| &e.indices), false);
        push(self.extra.as_ref().and_then(|e| e.lengths.as_ref()), true);
        push(self.attn_sink.as_ref(), false);
        let mut kv = |c: Option<&KvCache<'_>>| match c {
            Some(c) => {
                let d = c.desc();
                s.extend_from_slice(&[
                    d.layout.to_raw() as i64,
                    d.layout.arrangement_raw() as i64,
                    d.head_dim as i64,
                    d.block_size as i64,
                ]);
                s.push(d.num_pages);
            }
            None => s.push(-1),
        };
        kv(Some(self.kv));
        kv(self.extra.as_ref().map(|e| e.kv));
        s.push(self.max_logits.is_some() as i64);
        s
    }
}

/// A sparse-attention plan: its workspace (device memory, freed on drop) and the
/// schedule the plan step wrote into it. Reuse it for every layer and step whose
/// shapes, lengths tensors and lengths contents are those it was planned with;
/// call [`Plan::replan`] when they change.
///
/// ```
/// # fn f(h: &spmla::Handle, mut args: spmla::SparseAttentionArgs<'_>) -> spmla::Result<()> {
/// let mut plan = h.plan_sparse_attention(&args, spmla::Stream::DEFAULT)?;
/// for _layer in 0..61 {
///     plan.run(&mut args, spmla::Stream::DEFAULT)?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Plan<'h> {
    workspace: Workspace<'h>,
    signature: Vec<i64>,
}

impl<'h> Plan<'h> {
    /// Plans again for `args` (new lengths or shapes), growing the workspace if needed.
    pub fn replan(&mut self, args: &SparseAttentionArgs<'_>, stream: Stream) -> Result<()> {
        let h = self.workspace.handle();
        let bytes = h.sparse_attention_workspace_size(args)?;
        self.workspace.reserve(bytes)?;
        let raw = args.to_raw();
        // SAFETY: raw points into args, alive for the call; workspace holds >= bytes.
        check(unsafe {
            sys::spmla_sparse_attention_plan(
                h.as_raw(),
                &raw,
                self.workspace.as_ptr(),
                self.workspace.len(),
                stream.as_raw(),
            )
        })?;
        self.signature = args.signature();
        Ok(())
    }

    /// Runs attention with the planned schedule. Fails (without calling the
    /// library) if `args` do not have the shapes and lengths tensors it was planned with.
    pub fn run(&mut self, args: &mut SparseAttentionArgs<'_>, stream: Stream) -> Result<()> {
        if args.signature() != self.signature {
            return Err(Error::invalid(
                "sparse_attention: the plan was built for other shapes, layouts or lengths \
                 tensors; call Plan::replan",
            ));
        }
        let raw = args.to_raw();
        let h = self.workspace.handle();
        // SAFETY: raw points into args (whose outputs are borrowed exclusively);
        // the workspace holds the planned schedule.
        check(unsafe {
            sys::spmla_sparse_attention_run(
                h.as_raw(),
                &raw,
                self.workspace.as_ptr(),
                self.workspace.len(),
                stream.as_raw(),
            )
        })
    }

    /// Bytes of workspace the plan holds.
    pub fn workspace_bytes(&self) -> usize {
        self.workspace.len()
    }
}

/// Arguments of `indices_to_slots` (operation 2): request-local positions to
/// slot ids through a block table.
#[derive(Debug)]
pub struct IndicesToSlotsArgs<'a> {
    /// `[T, K]` int32 positions inside each token's request; -1 = none.
    pub positions: TensorRef<'a>,
    /// `[T]` int32 request of each token.
    pub token_to_req: TensorRef<'a>,
    /// `[R, max_pages]` int32 page ids.
    pub block_table: TensorRef<'a>,
    /// Tokens per page.
    pub block_size: i32,
    /// Optional `[T]` uint8: 0 marks a token whose entries are all -1.
    pub token_valid: Option<TensorRef<'a>>,
    /// Output `[T, K]` int32 slot ids.
    pub slots: TensorMut<'a>,
    /// Output `[T]` int32 number of valid entries.
    pub lengths: TensorMut<'a>,
    /// Optional output `[T + 1]` int32 offsets of the ragged form (with `ragged_slots`).
    pub indptr: Option<TensorMut<'a>>,
    /// Optional output `[>= T·K]` int32 packed valid slots (with `indptr`).
    pub ragged_slots: Option<TensorMut<'a>>,
}

impl<'a> IndicesToSlotsArgs<'a> {
    /// The required arguments, without `token_valid` or the ragged outputs.
    pub fn new(
        positions: TensorRef<'a>,
        token_to_req: TensorRef<'a>,
        block_table: TensorRef<'a>,
        block_size: i32,
        slots: TensorMut<'a>,
        lengths: TensorMut<'a>,
    ) -> IndicesToSlotsArgs<'a> {
        IndicesToSlotsArgs {
            positions,
            token_to_req,
            block_table,
            block_size,
            token_valid: None,
            slots,
            lengths,
            indptr: None,
            ragged_slots: None,
        }
    }
}

/// Arguments of `window_indices` (operation 3): sliding-window (`ratio` 1) and
/// "all compressed tokens" (`ratio` 128) lists.
#[derive(Debug)]
pub struct WindowIndicesArgs<'a> {
    /// `[T]` int32 absolute position of each token in its request.
    pub positions: TensorRef<'a>,
    /// `[T]` int32 request of each token.
    pub token_to_req: TensorRef<'a>,
    /// `[R, max_pages]` int32 page ids.
    pub block_table: TensorRef<'a>,
    /// Tokens per page.
    pub block_size: i32,
    /// Compression ratio, at least 1.
    pub ratio: i32,
    /// Output `[T, W]` int32 slots of positions `lo..hi`, then -1.
    pub slots: TensorMut<'a>,
    /// Output `[T]` int32 `hi - lo`.
    pub lengths: TensorMut<'a>,
}

/// Arguments of the ragged `indexer_logits` (operation 4):
/// `logits[t, j] = Σ_h weights[t,h] · relu(k_scale[j] · <q[t,h,:], k[j,:]>)` for
/// `k_start[t] <= j < k_end[t]`, `-inf` elsewhere.
#[derive(Debug)]
pub struct IndexerLogitsArgs<'a> {
    /// `[T, Hi, Di]` fp8.
    pub q: TensorRef<'a>,
    /// `[S, Di]` fp8, same dtype as `q`.
    pub k: TensorRef<'a>,
    /// `[S]` fp32.
    pub k_scale: TensorRef<'a>,
    /// `[T, Hi]` fp32.
    pub weights: TensorRef<'a>,
    /// `[T]` int32.
    pub k_start: TensorRef<'a>,
    /// `[T]` int32.
    pub k_end: TensorRef<'a>,
    /// Output `[T, S]` fp32 (row stride free).
    pub logits: TensorMut<'a>,
}

impl IndexerLogitsArgs<'_> {
    fn to_raw(&self) -> sys::spmla_indexer_logits_args_t {
        sys::spmla_indexer_logits_args_t {
            struct_size: std::mem::size_of::<sys::spmla_indexer_logits_args_t>(),
            q: self.q.as_raw(),
            k: self.k.as_raw(),
            k_scale: self.k_scale.as_raw(),
            weights: self.weights.as_raw(),
            k_start: self.k_start.as_raw(),
            k_end: self.k_end.as_raw(),
            logits: self.logits.as_raw(),
        }
    }
}

/// Arguments of the paged (decode) `indexer_logits`: row `r = b·N + i` scores
/// positions `j < context_lens[b] - N + i + 1` of request `b`.
#[derive(Debug)]
pub struct IndexerLogitsPagedArgs<'a> {
    /// `[B, N, Hi, Di]` fp8 (dtype = the cache's flavor).
    pub q: TensorRef<'a>,
    /// An [`crate::KvLayout::IndexerFp8`] cache of head dim Di.
    pub cache: &'a KvCache<'a>,
    /// `[B, max_pages]` int32.
    pub block_table: TensorRef<'a>,
    /// `[B]` int32.
    pub context_lens: TensorRef<'a>,
    /// `[B·N, Hi]` fp32.
    pub weights: TensorRef<'a>,
    /// Output `[B·N, C]` fp32 (row stride free).
    pub logits: TensorMut<'a>,
}

impl IndexerLogitsPagedArgs<'_> {
    fn to_raw(&self) -> sys::spmla_indexer_logits_paged_args_t {
        sys::spmla_indexer_logits_paged_args_t {
            struct_size: std::mem::size_of::<sys::spmla_indexer_logits_paged_args_t>(),
            q: self.q.as_raw(),
            cache: self.cache.as_raw(),
            block_table: self.block_table.as_raw(),
            context_lens: self.context_lens.as_raw(),
            weights: self.weights.as_raw(),
            logits: self.logits.as_raw(),
        }
    }
}

/// Arguments of `topk_per_row` (operation 5): per row the `k = indices.shape[1]`
/// largest values of its range, as ascending columns relative to the range start
/// (ties toward the smaller column, NaN below every number, -1 padding).
#[derive(Debug)]
pub struct TopkPerRowArgs<'a> {
    /// `[R, C]` fp32 (row stride free).
    pub logits: TensorRef<'a>,
    /// Optional `[R]` int32 range starts (absent: 0).
    pub row_starts: Option<TensorRef<'a>>,
    /// Optional `[R]` int32 range ends (absent: C).
    pub row_ends: Option<TensorRef<'a>>,
    /// Optional `[R / next_n]` int32: the paged decode rule instead of starts/ends.
    pub context_lens: Option<TensorRef<'a>>,
    /// Tokens per request for the paged rule (at least 1).
    pub next_n: i32,
    /// Output `[R, k]` int32.
    pub indices: TensorMut<'a>,
}

impl<'a> TopkPerRowArgs<'a> {
    /// Top-k over whole rows (no ranges).
    pub fn new(logits: TensorRef<'a>, indices: TensorMut<'a>) -> TopkPerRowArgs<'a> {
        TopkPerRowArgs {
            logits,
            row_starts: None,
            row_ends: None,
            context_lens: None,
            next_n: 1,
            indices,
        }
    }

    fn to_raw(&self) -> sys::spmla_topk_per_row_args_t {
        sys::spmla_topk_per_row_args_t {
            struct_size: std::mem::size_of::<sys::spmla_topk_per_row_args_t>(),
            logits: self.logits.as_raw(),
            row_starts: opt(&self.row_starts),
            row_ends: opt(&self.row_ends),
            context_lens: opt(&self.context_lens),
            next_n: self.next_n,
            indices: self.indices.as_raw(),
        }
    }
}

fn same_handle(h: &Handle, ws: &Workspace<'_>) -> Result<()> {
    if !ptr::eq(h, ws.handle()) {
        return Err(Error::invalid("the workspace belongs to another handle"));
    }
    Ok(())
}

impl Handle {
    /// Workspace bytes sparse attention needs for these shapes (reads no data).
    pub fn sparse_attention_workspace_size(&self, args: &SparseAttentionArgs<'_>) -> Result<usize> {
        let raw = args.to_raw();
        let mut n = 0usize;
        // SAFETY: raw points into args, alive for the call.
        check(unsafe {
            sys::spmla_sparse_attention_get_workspace_size(self.as_raw(), &raw, &mut n)
        })?;
        Ok(n)
    }

    /// Queries the workspace size, allocates it and plans the schedule on `stream`.
    pub fn plan_sparse_attention(
        &self,
        args: &SparseAttentionArgs<'_>,
        stream: Stream,
    ) -> Result<Plan<'_>> {
        let mut plan = Plan {
            workspace: Workspace::new(self),
            signature: Vec::new(),
        };
        plan.replan(args, stream)?;
        Ok(plan)
    }

    /// Plans and runs sparse attention once (a convenience for one-off calls;
    /// keep a [`Plan`] to reuse the schedule).
    pub fn sparse_attention(
        &self,
        args: &mut SparseAttentionArgs<'_>,
        stream: Stream,
    ) -> Result<()> {
        let mut plan = self.plan_sparse_attention(args, stream)?;
        plan.run(args, stream)?;
        // The workspace is freed when the plan drops: wait for the queued work first.
        self.synchronize(stream)
    }

    /// Request-local positions to slot ids (operation 2).
    pub fn indices_to_slots(
        &self,
        args: &mut IndicesToSlotsArgs<'_>,
        stream: Stream,
    ) -> Result<()> {
        let raw = sys::spmla_indices_to_slots_args_t {
            struct_size: std::mem::size_of::<sys::spmla_indices_to_slots_args_t>(),
            positions: args.positions.as_raw(),
            token_to_req: args.token_to_req.as_raw(),
            block_table: args.block_table.as_raw(),
            block_size: args.block_size,
            token_valid: opt(&args.token_valid),
            slots: args.slots.as_raw(),
            lengths: args.lengths.as_raw(),
            indptr: opt_mut(&args.indptr),
            ragged_slots: opt_mut(&args.ragged_slots),
        };
        // SAFETY: raw points into args; outputs borrowed exclusively.
        check(unsafe { sys::spmla_indices_to_slots_run(self.as_raw(), &raw, stream.as_raw()) })
    }

    /// Sliding-window / compressed-token slot lists (operation 3).
    pub fn window_indices(&self, args: &mut WindowIndicesArgs<'_>, stream: Stream) -> Result<()> {
        let raw = sys::spmla_window_indices_args_t {
            struct_size: std::mem::size_of::<sys::spmla_window_indices_args_t>(),
            positions: args.positions.as_raw(),
            token_to_req: args.token_to_req.as_raw(),
            block_table: args.block_table.as_raw(),
            block_size: args.block_size,
            ratio: args.ratio,
            slots: args.slots.as_raw(),
            lengths: args.lengths.as_raw(),
        };
        // SAFETY: raw points into args; outputs borrowed exclusively.
        check(unsafe { sys::spmla_window_indices_run(self.as_raw(), &raw, stream.as_raw()) })
    }

    /// Workspace bytes of the ragged indexer.
    pub fn indexer_logits_workspace_size(&self, args: &IndexerLogitsArgs<'_>) -> Result<usize> {
        let raw = args.to_raw();
        let mut n = 0usize;
        // SAFETY: raw points into args.
        check(unsafe {
            sys::spmla_indexer_logits_get_workspace_size(self.as_raw(), &raw, &mut n)
        })?;
        Ok(n)
    }

    /// The ragged lightning indexer (operation 4); grows `workspace` as needed.
    pub fn indexer_logits(
        &self,
        args: &mut IndexerLogitsArgs<'_>,
        workspace: &mut Workspace<'_>,
        stream: Stream,
    ) -> Result<()> {
        same_handle(self, workspace)?;
        workspace.reserve(self.indexer_logits_workspace_size(args)?)?;
        let raw = args.to_raw();
        // SAFETY: raw points into args; the workspace is large enough.
        check(unsafe {
            sys::spmla_indexer_logits_run(
                self.as_raw(),
                &raw,
                workspace.as_ptr(),
                workspace.len(),
                stream.as_raw(),
            )
        })
    }

    /// Workspace bytes of the paged indexer.
    pub fn indexer_logits_paged_workspace_size(
        &self,
        args: &IndexerLogitsPagedArgs<'_>,
    ) -> Result<usize> {
        let raw = args.to_raw();
        let mut n = 0usize;
        // SAFETY: raw points into args.
        check(unsafe {
            sys::spmla_indexer_logits_paged_get_workspace_size(self.as_raw(), &raw, &mut n)
        })?;
        Ok(n)
    }

    /// The paged (decode) lightning indexer (operation 4); grows `workspace` as needed.
    pub fn indexer_logits_paged(
        &self,
        args: &mut IndexerLogitsPagedArgs<'_>,
        workspace: &mut Workspace<'_>,
        stream: Stream,
    ) -> Result<()> {
        same_handle(self, workspace)?;
        workspace.reserve(self.indexer_logits_paged_workspace_size(args)?)?;
        let raw = args.to_raw();
        // SAFETY: raw points into args; the workspace is large enough.
        check(unsafe {
            sys::spmla_indexer_logits_paged_run(
                self.as_raw(),
                &raw,
                workspace.as_ptr(),
                workspace.len(),
                stream.as_raw(),
            )
        })
    }

    /// Workspace bytes of `topk_per_row`.
    pub fn topk_per_row_workspace_size(&self, args: &TopkPerRowArgs<'_>) -> Result<usize> {
        let raw = args.to_raw();
        let mut n = 0usize;
        // SAFETY: raw points into args.
        check(unsafe { sys::spmla_topk_per_row_get_workspace_size(self.as_raw(), &raw, &mut n) })?;
        Ok(n)
    }

    /// Per-row top-k (operation 5); grows `workspace` as needed.
    pub fn topk_per_row(
        &self,
        args: &mut TopkPerRowArgs<'_>,
        workspace: &mut Workspace<'_>,
        stream: Stream,
    ) -> Result<()> {
        same_handle(self, workspace)?;
        workspace.reserve(self.topk_per_row_workspace_size(args)?)?;
        let raw = args.to_raw();
        // SAFETY: raw points into args; the workspace is large enough.
        check(unsafe {
            sys::spmla_topk_per_row_run(
                self.as_raw(),
                &raw,
                workspace.as_ptr(),
                workspace.len(),
                stream.as_raw(),
            )
        })
    }

    /// Writes `kv[n]` (`[N, D]` bf16, NoPE then RoPE) into slot `slot_mapping[n]`
    /// (`[N]` int32 or int64; negative = skip) of `cache`, quantizing for FP8
    /// layouts (operation 6).
    pub fn kv_cache_store(
        &self,
        kv: &TensorRef<'_>,
        slot_mapping: &TensorRef<'_>,
        cache: &mut KvCache<'_>,
        stream: Stream,
    ) -> Result<()> {
        let raw = sys::spmla_kv_cache_store_args_t {
            struct_size: std::mem::size_of::<sys::spmla_kv_cache_store_args_t>(),
            kv: kv.as_raw(),
            slot_mapping: slot_mapping.as_raw(),
            cache: cache.as_raw(),
        };
        // SAFETY: descriptors alive for the call; the cache is borrowed exclusively.
        check(unsafe { sys::spmla_kv_cache_store_run(self.as_raw(), &raw, stream.as_raw()) })
    }

    /// Dequantizes the rows of `slots` (`[N]` int32) into `out` (`[N, D]` bf16);
    /// invalid slots give zero rows (operation 7).
    pub fn kv_cache_gather(
        &self,
        cache: &KvCache<'_>,
        slots: &TensorRef<'_>,
        out: &mut TensorMut<'_>,
        stream: Stream,
    ) -> Result<()> {
        let raw = sys::spmla_kv_cache_gather_args_t {
            struct_size: std::mem::size_of::<sys::spmla_kv_cache_gather_args_t>(),
            cache: cache.as_raw(),
            slots: slots.as_raw(),
            out: out.as_raw(),
        };
        // SAFETY: descriptors alive for the call; out borrowed exclusively.
        check(unsafe { sys::spmla_kv_cache_gather_run(self.as_raw(), &raw, stream.as_raw()) })
    }
}
