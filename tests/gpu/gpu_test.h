// gpu_test.h — helpers of the GPU tier: a GPU handle and a CPU handle, device buffers through the
// public API, poisoning, random inputs (fresh seed per run, printed on failure).
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kv_layout.h"
#include "numerics.h"
#include "spmla.h"

namespace gpu_test {

inline const char *backend_name() {
  const char *e = std::getenv("SPMLA_GPU_BACKEND");
  return (e && *e) ? e : "cuda";
}

inline void check(spmla_status_t st, const char *what) {
  INFO(what << ": " << spmla_status_string(st) << " " << spmla_last_error_message());
  REQUIRE(st == SPMLA_STATUS_SUCCESS);
}

struct Handles {
  spmla_handle_t gpu = nullptr, cpu = nullptr;
  Handles() {
    check(spmla_handle_create(backend_name(), 0, &gpu), "gpu handle");
    check(spmla_handle_create("cpu", 0, &cpu), "cpu handle");
  }
  ~Handles() {
    spmla_handle_destroy(gpu);
    spmla_handle_destroy(cpu);
  }
  static Handles &get() {
    static Handles h;
    return h;
  }
};
inline spmla_handle_t G() { return Handles::get().gpu; }
inline spmla_handle_t C() { return Handles::get().cpu; }

// A device buffer mirroring a host vector.
struct DevBuf {
  void *p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  explicit DevBuf(size_t n) : bytes(n) {
    if (n) check(spmla_device_malloc(G(), n, &p), "device_malloc");
  }
  template <typename T>
  explicit DevBuf(const std::vector<T> &v) : DevBuf(v.size() * sizeof(T)) {
    upload(v);
  }
  DevBuf(const DevBuf &) = delete;
  DevBuf &operator=(const DevBuf &) = delete;
  DevBuf(DevBuf &&o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  DevBuf &operator=(DevBuf &&o) noexcept {
    if (this != &o) {
      if (p) spmla_device_free(G(), p);
      p = o.p;
      bytes = o.bytes;
      o.p = nullptr;
    }
    return *this;
  }
  ~DevBuf() {
    if (p) spmla_device_free(G(), p);
  }
  template <typename T>
  void upload(const std::vector<T> &v) {
    REQUIRE(v.size() * sizeof(T) <= bytes);
    if (!v.empty()) check(spmla_memcpy(G(), p, v.data(), v.size() * sizeof(T), SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr), "h2d");
  }
  template <typename T>
  std::vector<T> download(size_t n) const {
    std::vector<T> v(n);
    if (n) check(spmla_memcpy(G(), v.data(), p, n * sizeof(T), SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr), "d2h");
    return v;
  }
  void poison(int byte = 0xff) {
    if (bytes) check(spmla_memset(G(), p, byte, bytes, nullptr), "memset");
  }
};

inline void sync() { check(spmla_stream_synchronize(G(), nullptr), "sync"); }

inline spmla_tensor_t tensor(const void *data, spmla_dtype_t dt, std::vector<int64_t> shape) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  t.data = const_cast<void *>(data);
  t.dtype = dt;
  t.ndim = (int32_t)shape.size();
  int64_t s = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.strides[d] = s;
    s *= shape[d];
  }
  return t;
}

struct Rng {
  uint64_t seed;
  std::mt19937_64 g;
  Rng() : seed(std::random_device{}() ^ ((uint64_t)std::random_device{}() << 32)), g(seed) {}
  double uni() { return std::uniform_real_distribution<double>(0.0, 1.0)(g); }
  int64_t range(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi - 1)(g); }  // [lo, hi)
  float normal(float sd = 1.f) { return std::normal_distribution<float>(0.f, sd)(g); }
};

inline std::vector<uint16_t> random_bf16(Rng &r, size_t n, float sd) {
  std::vector<uint16_t> v(n);
  for (auto &x : v) x = spmla::f32_to_bf16(r.normal(sd));
  return v;
}

inline float qnan() { return std::numeric_limits<float>::quiet_NaN(); }
inline float inf() { return std::numeric_limits<float>::infinity(); }

template <typename T>
inline std::vector<T> poisoned(size_t n) {
  std::vector<T> v(n);
  memset(v.data(), 0xff, n * sizeof(T));
  return v;
}

}  // namespace gpu_test
