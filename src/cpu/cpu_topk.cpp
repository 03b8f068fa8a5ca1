// cpu_topk.cpp — topk_per_row (docs/SPEC.md op 5).
//
// Per row r: the range [s, e) is [row_starts[r], row_ends[r]) (absent start: 0, absent end: C),
// or with context_lens the paged rule [0, context_lens[r / next_n] - next_n + r % next_n + 1);
// when context_lens is given it takes precedence over row_starts/row_ends. The range is clipped
// to [0, C). The k best columns are chosen with the total order
//   better(a, b) = rank(v_a) > rank(v_b) || (rank(v_a) == rank(v_b) && a < b)
// where rank puts NaN below every number (-inf included) and treats all NaNs as equal; so ties go
// to the smaller column. nth_element + sort: O(len) per row on average, deterministic (the order
// is total, so the selected set is unique). The selected columns are written in ascending order,
// relative to the clipped start max(s, 0) (so every written value is in [0, e - s)); then -1.
#include <algorithm>
#include <cmath>

#include "cpu/cpu_internal.h"

namespace spmla {
namespace cpu {

spmla_status_t topk_per_row(Context &ctx, const spmla_topk_per_row_args_t &a) {
  const int64_t R = a.logits->shape[0];
  const int64_t C = a.logits->shape[1];
  const int64_t k = a.indices->shape[1];
  const int64_t next_n = a.next_n >= 1 ? a.next_n : 1;

  // Per worker scratch: the candidate columns of a row. Reserved here, on the calling thread, so
  // that no task allocates (an exception inside a pool task could not be reported).
  std::vector<std::vector<int32_t>> cand(static_cast<size_t>(ctx.pool.size()));
  for (auto &c : cand) c.reserve(static_cast<size_t>(C));

  ctx.pool.run(R, [&](int64_t r, int worker) {
    int64_t s = 0, e = C;
    if (a.context_lens) {
      e = int64_t(*at<const int32_t>(a.context_lens, r / next_n)) - next_n + r % next_n + 1;
    } else {
      if (a.row_starts) s = *at<const int32_t>(a.row_starts, r);
      if (a.row_ends) e = *at<const int32_t>(a.row_ends, r);
    }
    s = std::max<int64_t>(s, 0);
    e = std::min<int64_t>(e, C);
    const int64_t len = e > s ? e - s : 0;
    int32_t *out = at<int32_t>(a.indices, r, 0);
    const float *v = at<const float>(a.logits, r, 0);
    if (len <= k) {
      for (int64_t i = 0; i < len; ++i) out[i] = static_cast<int32_t>(i);
      for (int64_t i = len; i < k; ++i) out[i] = -1;
      return;
    }
    std::vector<int32_t> &c = cand[static_cast<size_t>(worker)];
    c.resize(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) c[static_cast<size_t>(i)] = static_cast<int32_t>(s + i);
    auto better = [v](int32_t x, int32_t y) {
      const float a = v[x], b = v[y];
      const bool na = std::isnan(a), nb = std::isnan(b);
      if (na != nb) return nb;  // a number beats NaN
      if (!na && a != b) return a > b;
      return x < y;
    };
    std::nth_element(c.begin(), c.begin() + (k - 1), c.end(), better);
    std::sort(c.begin(), c.begin() + k);
    for (int64_t i = 0; i < k; ++i) out[i] = static_cast<int32_t>(c[static_cast<size_t>(i)] - s);
  });
  return SPMLA_STATUS_SUCCESS;
}

}  // namespace cpu
}  // namespace spmla
