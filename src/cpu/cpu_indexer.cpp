// cpu_indexer.cpp — indexer_logits, ragged and paged (docs/SPEC.md op 4).
//
// logits[r, j] = sum_h weights[r, h] * relu(k_scale[j] * <q[r, h, :], k[j, :]>), with q and k
// decoded from FP8 to fp32, the dot product in fp32 (16 lane partial sums, fixed order), the sum
// over heads in fp32 in head order. Columns outside the row's range are -inf; every column
// [0, C) of every row is written.
#include <algorithm>
#include <limits>

#include "cpu/cpu_internal.h"

namespace spmla {
namespace cpu {

namespace {

constexpr int64_t kColumnChunk = 256;

// Scores columns [j0, j1) of one row. key(j, &bytes, &scale) gives key j's Di fp8 bytes and its
// scale, or returns false for "no key" (-inf).
template <class KeyFn>
void score_columns(const float *qf, int64_t Hi, int64_t Di, int64_t Dp, const float *w,
                   const float *table, float *kf, int64_t j0, int64_t j1, float *out, KeyFn key) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t j = j0; j < j1; ++j) {
    const uint8_t *kb = nullptr;
    float ks = 0.0f;
    if (!key(j, &kb, &ks)) {
      out[j] = ninf;
      continue;
    }
    for (int64_t d = 0; d < Di; ++d) kf[d] = table[kb[d]];
    for (int64_t d = Di; d < Dp; ++d) kf[d] = 0.0f;
    float sum = 0.0f;
    for (int64_t h = 0; h < Hi; ++h) {
      const float s = ks * dot16(qf + h * Dp, kf, Dp);
      sum += w[h] * (s > 0.0f ? s : 0.0f);
    }
    out[j] = sum;
  }
}

// Decodes q's Hi x Di fp8 bytes (rows at stride `hstride` elements) into qf [Hi][Dp], zero-padded.
void decode_q(const uint8_t *q, int64_t hstride, int64_t Hi, int64_t Di, int64_t Dp,
              const float *table, float *qf) {
  for (int64_t h = 0; h < Hi; ++h) {
    for (int64_t d = 0; d < Di; ++d) qf[h * Dp + d] = table[q[h * hstride + d]];
    for (int64_t d = Di; d < Dp; ++d) qf[h * Dp + d] = 0.0f;
  }
}

}  // namespace

spmla_status_t indexer_logits(Context &ctx, const spmla_indexer_logits_args_t &a) {
  const int64_t T = a.q->shape[0];
  const int64_t Hi = a.q->shape[1];
  const int64_t Di = a.q->shape[2];
  const int64_t S = a.k->shape[0];
  const int64_t C = a.logits->shape[1];
  const int64_t Dp = round_up(Di, 16);
  const float *table = fp8_table(kind_of_dtype(a.q->dtype));
  const int64_t chunks = (C + kColumnChunk - 1) / kColumnChunk;
  const size_t per_worker = static_cast<size_t>(Hi * Dp + Dp + Hi);
  for (auto &ws : ctx.worker_scratch)
    if (ws.size() < per_worker) ws.resize(per_worker);
  const float ninf = -std::numeric_limits<float>::infinity();

  ctx.pool.run(T * chunks, [&](int64_t task, int worker) {
    const int64_t t = task / chunks;
    const int64_t c0 = (task % chunks) * kColumnChunk;
    const int64_t c1 = std::min(C, c0 + kColumnChunk);
    float *row = at<float>(a.logits, t, 0);
    int64_t lo = *at<const int32_t>(a.k_start, t);
    int64_t hi = *at<const int32_t>(a.k_end, t);
    lo = std::max<int64_t>(lo, 0);
    hi = std::min(hi, std::min(S, C));
    const int64_t j0 = std::max(lo, c0), j1 = std::min(hi, c1);
    for (int64_t j = c0; j < c1; ++j)
      if (j < j0 || j >= j1) row[j] = ninf;
    if (j0 >= j1) return;
    float *qf = ctx.worker_scratch[static_cast<size_t>(worker)].data();
    float *kf = qf + Hi * Dp;
    float *w = kf + Dp;
    decode_q(at<const uint8_t>(a.q, t, 0, 0), a.q->strides[1], Hi, Di, Dp, table, qf);
    for (int64_t h = 0; h < Hi; ++h) w[h] = *at<const float>(a.weights, t, h);
    score_columns(qf, Hi, Di, Dp, w, table, kf, j0, j1, row,
                  [&](int64_t j, const uint8_t **kb, float *ks) {
                    *kb = at<const uint8_t>(a.k, j, 0);
                    *ks = *at<const float>(a.k_scale, j);
                    return true;
                  });
  });
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t indexer_logits_paged(Context &ctx, const spmla_indexer_logits_paged_args_t &a) {
  const int64_t B = a.q->shape[0];
  const int64_t N = a.q->shape[1];
  const int64_t Hi = a.q->shape[2];
  const int64_t Di = a.q->shape[3];
  const int64_t C = a.logits->shape[1];
  const int64_t Dp = round_up(Di, 16);
  const CacheView cv(*a.cache);
  const int64_t bs = cv.g.block_size;
  const int64_t max_pages = a.block_table->shape[1];
  const float *table = fp8_table(kind_of(cv.g.flavor));
  const int64_t chunks = (C + kColumnChunk - 1) / kColumnChunk;
  const size_t per_worker = static_cast<size_t>(Hi * Dp + Dp + Hi);
  for (auto &ws : ctx.worker_scratch)
    if (ws.size() < per_worker) ws.resize(per_worker);
  const float ninf = -std::numeric_limits<float>::infinity();

  ctx.pool.run(B * N * chunks, [&](int64_t task, int worker) {
    const int64_t r = task / chunks;
    const int64_t b = r / N, i = r % N;
    const int64_t c0 = (task % chunks) * kColumnChunk;
    const int64_t c1 = std::min(C, c0 + kColumnChunk);
    float *row = at<float>(a.logits, r, 0);
    // Row (b, i) covers logical positions j < context_lens[b] - N + i + 1 (and j < C).
    const int64_t limit = int64_t(*at<const int32_t>(a.context_lens, b)) - N + i + 1;
    const int64_t j1 = std::min(c1, limit);
    for (int64_t j = std::max(c0, j1); j < c1; ++j) row[j] = ninf;
    if (j1 <= c0) return;
    float *qf = ctx.worker_scratch[static_cast<size_t>(worker)].data();
    float *kf = qf + Hi * Dp;
    float *w = kf + Dp;
    decode_q(at<const uint8_t>(a.q, b, i, 0, 0), a.q->strides[2], Hi, Di, Dp, table, qf);
    for (int64_t h = 0; h < Hi; ++h) w[h] = *at<const float>(a.weights, r, h);
    // Key j lives in page block_table[b][j / bs] at offset j % bs: Di fp8 bytes at
    // page + off*Di, its fp32 scale at page + bs*Di + off*4. A position whose page index is
    // beyond the table, or whose table entry is negative or >= num_pages, has no key: -inf.
    score_columns(qf, Hi, Di, Dp, w, table, kf, c0, j1, row,
                  [&](int64_t j, const uint8_t **kb, float *ks) {
                    const int64_t pi = j / bs;
                    if (pi >= max_pages) return false;
                    const int64_t page = *at<const int32_t>(a.block_table, b, pi);
                    if (page < 0 || page >= cv.g.num_pages) return false;
                    const uint8_t *base = cv.g.base + page * cv.g.page_stride;
                    const int64_t off = j % bs;
                    *kb = base + off * Di;
                    float s;
                    std::memcpy(&s, base + bs * Di + off * 4, 4);
                    *ks = s;
                    return true;
                  });
  });
  return SPMLA_STATUS_SUCCESS;
}

}  // namespace cpu
}  // namespace spmla
