// cpu_attention.cpp — sparse_attention, the reference (docs/SPEC.md op 1).
//
// Per token t:
//   1. J = the valid entries of the main list (list position < lengths[t], slot in
//      [0, num_pages*block_size)) followed by those of the extra list; duplicates stay (each
//      occurrence counts). Invalid entries are never read.
//   2. Each selected key row is dequantized ONCE to fp32 (shared by all heads: MQA), zero-padded
//      to a multiple of 16 values so the dot product vectorises.
//   3. Parallel over blocks of heads: logit_j = scale * <q_h, k_j> (fp32, q bf16 -> fp32),
//      max_logits = max_j logit_j, lse = max + log(sum_j exp(logit_j - max)) with the sum and the
//      exponentials in double, weight_j = exp(logit_j - lse), out = sum_j weight_j * V_j in fp32
//      (V_j = the first D_v dequantized values of the row), times 1/(1 + exp(sink[h] - lse))
//      when a sink is given, rounded to bf16 (RNE).
//   Empty J: out = +0, lse = +inf, max_logits = -inf. A sink of +inf writes +0 exactly.
// Every (token, head) result is computed by one task in a fixed order, so the output does not
// depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/cpu_internal.h"

namespace spmla {
namespace cpu {

namespace {

constexpr int kHeadBlock = 8;

struct Entry {
  const CacheView *cv;
  int64_t slot;
};

// Appends the valid entries of indices[t, 0:min(len, K)) to `list`.
void collect(const CacheView &cv, const spmla_tensor_t *indices, const spmla_tensor_t *lengths,
             int64_t t, std::vector<Entry> &list) {
  const int64_t K = indices->shape[1];
  int64_t len = K;
  if (lengths) {
    const int64_t l = *at<const int32_t>(lengths, t);
    len = l < 0 ? 0 : (l > K ? K : l);
  }
  const int32_t *row = at<const int32_t>(indices, t, 0);
  for (int64_t k = 0; k < len; ++k) {
    const int64_t slot = row[k];  // inner stride is 1 (validated)
    if (cv.valid(slot)) list.push_back(Entry{&cv, slot});
  }
}

}  // namespace

spmla_status_t sparse_attention(Context &ctx, const spmla_sparse_attention_args_t &a) {
  const spmla_tensor_t *q = a.q;
  const int64_t T = q->shape[0];
  const int64_t H = q->shape[1];
  const int64_t Dqk = q->shape[2];
  const int64_t Dv = a.out->shape[2];
  const int64_t Dp = round_up(Dqk, 16);
  const float scale = a.scale != 0.0f ? a.scale : static_cast<float>(1.0 / std::sqrt(double(Dqk)));

  const CacheView main_cv(*a.kv);
  const bool has_extra = a.extra_kv != nullptr && a.extra_indices != nullptr;
  const CacheView extra_cv(has_extra ? *a.extra_kv : *a.kv);
  const int64_t max_n = a.indices->shape[1] + (has_extra ? a.extra_indices->shape[1] : 0);

  const int64_t nblocks = (H + kHeadBlock - 1) / kHeadBlock;
  // Scratch: the token's dequantized rows (shared), and per worker q block + logits + accumulators.
  ctx.shared_scratch.resize(static_cast<size_t>(max_n * Dp));
  const size_t per_worker = static_cast<size_t>(kHeadBlock * (Dp + max_n + Dv));
  for (auto &w : ctx.worker_scratch)
    if (w.size() < per_worker) w.resize(per_worker);
  float *kbuf = ctx.shared_scratch.data();

  std::vector<Entry> list;
  list.reserve(static_cast<size_t>(max_n));
  const float inf = std::numeric_limits<float>::infinity();

  for (int64_t t = 0; t < T; ++t) {
    list.clear();
    collect(main_cv, a.indices, a.lengths, t, list);
    if (has_extra) collect(extra_cv, a.extra_indices, a.extra_lengths, t, list);
    const int64_t n = static_cast<int64_t>(list.size());

    // 2. dequantize each selected row once
    ctx.pool.parallel_for(n, 32, [&](int64_t b, int64_t e, int) {
      for (int64_t j = b; j < e; ++j) {
        float *dst = kbuf + j * Dp;
        dequantize_row(*list[static_cast<size_t>(j)].cv, list[static_cast<size_t>(j)].slot, dst);
        for (int64_t d = Dqk; d < Dp; ++d) dst[d] = 0.0f;
      }
    });

    // 3. heads, in blocks
    ctx.pool.run(nblocks, [&](int64_t blk, int worker) {
      float *qf = ctx.worker_scratch[static_cast<size_t>(worker)].data();
      float *logit = qf + kHeadBlock * Dp;
      float *acc = logit + kHeadBlock * max_n;
      const int64_t h0 = blk * kHeadBlock;
      const int64_t nh = std::min<int64_t>(kHeadBlock, H - h0);

      for (int64_t i = 0; i < nh; ++i) {
        const uint16_t *qrow = at<const uint16_t>(q, t, h0 + i, 0);
        float *qi = qf + i * Dp;
        for (int64_t d = 0; d < Dqk; ++d) qi[d] = bf16_to_f32(qrow[d]);
        for (int64_t d = Dqk; d < Dp; ++d) qi[d] = 0.0f;
      }
      // logits[i][j], key-major so each key row is loaded once for the whole block
      for (int64_t j = 0; j < n; ++j) {
        const float *kj = kbuf + j * Dp;
        for (int64_t i = 0; i < nh; ++i) logit[i * max_n + j] = scale * dot16(qf + i * Dp, kj, Dp);
      }
      double lse[kHeadBlock];
      float mx[kHeadBlock];
      for (int64_t i = 0; i < nh; ++i) {
        float *li = logit + i * max_n;
        if (n == 0) {
          lse[i] = std::numeric_limits<double>::infinity();
          mx[i] = -inf;
          continue;
        }
        float m = li[0];
        for (int64_t j = 1; j < n; ++j) m = li[j] > m ? li[j] : m;
        double sum = 0.0;
        for (int64_t j = 0; j < n; ++j) sum += std::exp(double(li[j]) - double(m));
        const double l = double(m) + std::log(sum);
        for (int64_t j = 0; j < n; ++j) li[j] = static_cast<float>(std::exp(double(li[j]) - l));
        lse[i] = l;
        mx[i] = m;
      }
      for (int64_t i = 0; i < nh * Dv; ++i) acc[i] = 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        const float *vj = kbuf + j * Dp;  // V = the first D_v dequantized values
        for (int64_t i = 0; i < nh; ++i) axpy(acc + i * Dv, logit[i * max_n + j], vj, Dv);
      }
      for (int64_t i = 0; i < nh; ++i) {
        const int64_t h = h0 + i;
        double factor = 1.0;
        if (a.attn_sink && n > 0) {
          const double sink = *at<const float>(a.attn_sink, h);
          factor = 1.0 / (1.0 + std::exp(sink - lse[i]));  // +inf sink -> 0, -inf sink -> 1
        }
        uint16_t *orow = at<uint16_t>(a.out, t, h, 0);
        const float *ai = acc + i * Dv;
        if (n == 0 || factor == 0.0) {
          for (int64_t d = 0; d < Dv; ++d) orow[d] = 0;  // +0 exactly
        } else if (factor == 1.0) {
          for (int64_t d = 0; d < Dv; ++d) orow[d] = f32_to_bf16(ai[d]);
        } else {
          const float f = static_cast<float>(factor);
          for (int64_t d = 0; d < Dv; ++d) orow[d] = f32_to_bf16(ai[d] * f);
        }
        *at<float>(a.lse, t, h) = static_cast<float>(lse[i]);
        if (a.max_logits) *at<float>(a.max_logits, t, h) = mx[i];
      }
    });
  }
  return SPMLA_STATUS_SUCCESS;
}

}  // namespace cpu
}  // namespace spmla
