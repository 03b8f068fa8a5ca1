// cache_reader.h — reads rows of a paged KV cache back to the host and dequantizes them in double,
// from the layout table of docs/SPEC.md ("KV cache layouts"), written independently of the library.
// Pages are fetched on demand with spmla_memcpy and kept, so checking a few tokens of a large
// device cache copies only the pages those tokens touch.
#pragma once
#include <spmla.h>

#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "check.h"
#include "host_numerics.h"

namespace spmla_cli {

class CacheReader {
 public:
  CacheReader(spmla_handle_t h, const spmla_kv_cache_t &c) : h_(h), c_(c) {
    size_t pb = 0;
    check(spmla_kv_cache_page_bytes(&c, &pb), "spmla_kv_cache_page_bytes");
    page_bytes_ = c.page_stride_bytes ? static_cast<size_t>(c.page_stride_bytes) : pb;
    dim_ = c.head_dim;
    if (dim_ == 0) dim_ = c.layout == SPMLA_KV_LAYOUT_V32_FP8 ? 576 : 512;
  }

  int dim() const { return dim_; }
  int64_t num_slots() const { return c_.num_pages * c_.block_size; }
  bool valid_slot(int64_t s) const { return s >= 0 && s < num_slots(); }

  // All D dequantized values of a slot (for INDEXER_FP8: the Di fp8 values times the token scale).
  void row(int64_t slot, std::vector<double> &out) {
    out.assign(dim_, 0.0);
    const int64_t page = slot / c_.block_size, off = slot % c_.block_size;
    const uint8_t *p = page_data(page);
    const int bs = c_.block_size;
    const spmla_fp8_flavor_t fl = c_.fp8_flavor;
    switch (c_.layout) {
      case SPMLA_KV_LAYOUT_BF16: {
        const uint8_t *t = p + off * 2 * dim_;
        for (int i = 0; i < dim_; ++i) out[i] = bf16_at(t + 2 * i);
        break;
      }
      case SPMLA_KV_LAYOUT_FP8_PER_TENSOR: {
        const uint8_t *t = p + off * dim_;
        for (int i = 0; i < dim_; ++i) out[i] = decode_fp8(t[i], fl) * double(c_.scale);
        break;
      }
      case SPMLA_KV_LAYOUT_V32_FP8: {
        // [0,512) fp8 NoPE | [512,528) 4 fp32 scales (one per 128) | [528,656) 64 bf16 RoPE
        const uint8_t *t = p + off * 656;
        for (int i = 0; i < 512; ++i) out[i] = decode_fp8(t[i], fl) * double(f32_at(t + 512 + 4 * (i / 128)));
        for (int i = 0; i < 64; ++i) out[512 + i] = bf16_at(t + 528 + 2 * i);
        break;
      }
      case SPMLA_KV_LAYOUT_V4_FP8: {
        // data rows of 576 B = [448 fp8 NoPE | 64 bf16 RoPE]; then scale rows of 8 B = 7 UE8M0 + pad
        const uint8_t *t = p + off * 576;
        const uint8_t *sc = p + int64_t(bs) * 576 + off * 8;
        for (int i = 0; i < 448; ++i) out[i] = decode_fp8(t[i], fl) * decode_ue8m0(sc[i / 64]);
        for (int i = 0; i < 64; ++i) out[448 + i] = bf16_at(t + 448 + 2 * i);
        break;
      }
      case SPMLA_KV_LAYOUT_INDEXER_FP8: {
        // per page: bs x Di fp8 bytes, then bs fp32 scales
        const uint8_t *t = p + off * dim_;
        const double s = f32_at(p + int64_t(bs) * dim_ + off * 4);
        for (int i = 0; i < dim_; ++i) out[i] = decode_fp8(t[i], fl) * s;
        break;
      }
      case SPMLA_KV_LAYOUT_V41_FP8:
      case SPMLA_KV_LAYOUT_V41_FP4: {
        // DeepSeek-V4.1 (SPEC "V4.1 cache layouts"). V41_FP8: 512 e4m3 bytes, 16 UE8M0 scales (one
        // per 32 values). V41_FP4: 256 bytes of e2m1 pairs (value i in byte i/2, even i in bits
        // 0-3), 32 E4M3FN scales (one per 16). Per token: data then scales, 528 / 288 B a token;
        // page-blocked: bs data rows, then bs scale rows.
        const bool fp4 = c_.layout == SPMLA_KV_LAYOUT_V41_FP4;
        const int data = fp4 ? 256 : 512, scales = fp4 ? 32 : 16;
        const bool blocked = c_.arrangement == SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED;
        const uint8_t *t = p + off * (blocked ? data : data + scales);
        const uint8_t *sc = blocked ? p + int64_t(bs) * data + off * scales : t + data;
        for (int i = 0; i < 512; ++i)
          out[i] = fp4 ? e2m1((t[i / 2] >> (4 * (i % 2))) & 15) * decode_e4m3fn(sc[i / 16])
                       : decode_fp8(t[i], fl) * decode_ue8m0(sc[i / 32]);
        break;
      }
      default:
        throw Error("cache reader: unknown layout");
    }
  }

 private:
  // FP4 E2M1: bit 3 sign, then 2 exponent bits (bias 1) and 1 mantissa bit.
  static double e2m1(int c) {
    const int e = (c >> 1) & 3, m = c & 1;
    const double v = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * double(1 << (e - 1));
    return (c & 8) ? -v : v;
  }
  static double bf16_at(const uint8_t *p) {
    uint16_t b;
    std::memcpy(&b, p, 2);
    return bf16_to_f32(b);
  }
  static double f32_at(const uint8_t *p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  const uint8_t *page_data(int64_t page) {
    auto it = pages_.find(page);
    if (it != pages_.end()) return it->second.data();
    std::vector<uint8_t> bytes(page_bytes_);
    const auto *src = static_cast<const uint8_t *>(c_.data) + page * page_bytes_;
    check(spmla_memcpy(h_, bytes.data(), src, page_bytes_, SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr),
          "spmla_memcpy (cache page to host)");
    return pages_.emplace(page, std::move(bytes)).first->second.data();
  }

  spmla_handle_t h_;
  spmla_kv_cache_t c_;
  size_t page_bytes_ = 0;
  int dim_ = 0;
  std::unordered_map<int64_t, std::vector<uint8_t>> pages_;
};

}  // namespace spmla_cli
