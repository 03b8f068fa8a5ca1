// cpu_indices.cpp — indices_to_slots and window_indices (docs/SPEC.md ops 2 and 3).
#include <limits>

#include "cpu/cpu_internal.h"

namespace spmla {
namespace cpu {

namespace {

// The slot of request-local position p of request `req`, or -1 when p < 0, p / bs is beyond the
// block table's width, the table entry is negative, or the slot id does not fit in int32.
inline int32_t slot_of(const spmla_tensor_t *block_table, int64_t req, int64_t p, int32_t bs) {
  if (p < 0) return -1;
  const int64_t max_pages = block_table->shape[1];
  const int64_t page_idx = p / bs;
  if (page_idx >= max_pages) return -1;
  const int64_t page = *at<const int32_t>(block_table, req, page_idx);
  if (page < 0) return -1;
  const int64_t slot = page * bs + p % bs;
  if (slot > std::numeric_limits<int32_t>::max()) return -1;
  return static_cast<int32_t>(slot);
}

inline bool request_valid(const spmla_tensor_t *block_table, int64_t req) {
  return req >= 0 && req < block_table->shape[0];
}

}  // namespace

spmla_status_t indices_to_slots(Context &ctx, const spmla_indices_to_slots_args_t &a) {
  const int64_t T = a.positions->shape[0];
  const int64_t K = a.positions->shape[1];
  const int32_t bs = a.block_size;
  ctx.pool.parallel_for(T, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t req = *at<const int32_t>(a.token_to_req, t);
      bool valid = request_valid(a.block_table, req);
      if (a.token_valid && *at<const uint8_t>(a.token_valid, t) == 0) valid = false;
      const int32_t *pos = at<const int32_t>(a.positions, t, 0);
      int32_t *out = at<int32_t>(a.slots, t, 0);
      int32_t count = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int32_t s = valid ? slot_of(a.block_table, req, pos[k], bs) : -1;
        out[k] = s;
        count += s >= 0 ? 1 : 0;
      }
      *at<int32_t>(a.lengths, t) = count;
    }
  });
  if (a.indptr && a.ragged_slots) {
    // Ragged form: an exclusive prefix sum of the lengths (serial: O(T)), then the valid entries
    // of each token in list order. Entries of ragged_slots beyond indptr[T] are not written.
    int64_t total = 0;
    *at<int32_t>(a.indptr, 0) = 0;
    for (int64_t t = 0; t < T; ++t) {
      total += *at<const int32_t>(a.lengths, t);
      *at<int32_t>(a.indptr, t + 1) = static_cast<int32_t>(total);
    }
    ctx.pool.parallel_for(T, 64, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        int64_t w = *at<const int32_t>(a.indptr, t);
        const int32_t *s = at<const int32_t>(a.slots, t, 0);
        for (int64_t k = 0; k < K; ++k)
          if (s[k] >= 0) *at<int32_t>(a.ragged_slots, w++) = s[k];
      }
    });
  }
  return SPMLA_STATUS_SUCCESS;
}

spmla_status_t window_indices(Context &ctx, const spmla_window_indices_args_t &a) {
  const int64_t T = a.positions->shape[0];
  const int64_t W = a.slots->shape[1];
  const int32_t bs = a.block_size;
  const int64_t ratio = a.ratio;
  ctx.pool.parallel_for(T, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t pos = *at<const int32_t>(a.positions, t);
      const int64_t req = *at<const int32_t>(a.token_to_req, t);
      int32_t *out = at<int32_t>(a.slots, t, 0);
      int64_t lo = 0, hi = 0;
      if (pos >= 0 && request_valid(a.block_table, req)) {
        hi = (pos + 1) / ratio;
        lo = hi - W > 0 ? hi - W : 0;
      }
      for (int64_t k = 0; k < W; ++k) {
        const int64_t p = lo + k;
        out[k] = p < hi ? slot_of(a.block_table, req, p, bs) : -1;
      }
      *at<int32_t>(a.lengths, t) = static_cast<int32_t>(hi - lo);
    }
  });
  return SPMLA_STATUS_SUCCESS;
}

}  // namespace cpu
}  // namespace spmla
