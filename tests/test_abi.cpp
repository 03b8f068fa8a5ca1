// test_abi.cpp — versions, the function table, status strings, dtypes, tensors, handles and
// the memory/event helpers of the public C ABI.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include <cstddef>

#include "spmla.h"

TEST_CASE("abi: versions agree between macros and run time", "[abi]") {
  CHECK(spmla_version_number() == unsigned(SPMLA_VERSION_NUMBER));
  CHECK(std::string(spmla_version_string()) == SPMLA_VERSION_STRING);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d.%d.%d", SPMLA_VERSION_MAJOR, SPMLA_VERSION_MINOR,
                SPMLA_VERSION_PATCH);
  CHECK(std::string(buf) == SPMLA_VERSION_STRING);
  CHECK(SPMLA_VERSION_NUMBER ==
        SPMLA_VERSION_MAJOR * 10000 + SPMLA_VERSION_MINOR * 100 + SPMLA_VERSION_PATCH);
  CHECK(spmla_abi_version() ==
        ((uint32_t(SPMLA_ABI_VERSION_MAJOR) << 16) | uint32_t(SPMLA_ABI_VERSION_MINOR)));
  // 1.1: SPMLA_STATUS_HANDLE_BUSY (a new enum value is an ABI minor). 1.2: the V41 layouts
  // (6, 7), spmla_kv_arrangement_t and spmla_kv_cache_t's trailing members (it grew 64 -> 72).
  // 1.3: handle options (spmla_option_t, spmla_handle_set_option / _get_option, two members at
  // the end of spmla_api_t).
  CHECK(std::string(SPMLA_VERSION_STRING) == "1.3.0");
  CHECK(SPMLA_VERSION_NUMBER == 10300);
  CHECK(spmla_abi_version() == ((1u << 16) | 3u));
  CHECK(int(SPMLA_OPTION_BATCH_INVARIANT) == 1);
  CHECK(int(SPMLA_KV_LAYOUT_V41_FP8) == 6);
  CHECK(int(SPMLA_KV_LAYOUT_V41_FP4) == 7);
  CHECK(int(SPMLA_KV_ARRANGEMENT_DEFAULT) == 0);
  CHECK(int(SPMLA_KV_ARRANGEMENT_PER_TOKEN) == 1);
  CHECK(int(SPMLA_KV_ARRANGEMENT_PAGE_BLOCKED) == 2);
  if (sizeof(void *) == 8) {
    CHECK(offsetof(spmla_kv_cache_t, scale) == 56);  // the 1.0 members did not move
    CHECK(offsetof(spmla_kv_cache_t, reserved0) == 60);
    CHECK(offsetof(spmla_kv_cache_t, arrangement) == 64);  // at the 1.0 sizeof, not in its padding
    CHECK(offsetof(spmla_kv_cache_t, reserved1) == 68);
    CHECK(sizeof(spmla_kv_cache_t) == 72);
  }
}

TEST_CASE("abi: spmla_get_api returns the full table", "[abi]") {
  const spmla_api_t *api = spmla_get_api(SPMLA_ABI_VERSION_MAJOR);
  REQUIRE(api != nullptr);
  CHECK(api == spmla_get_api(SPMLA_ABI_VERSION_MAJOR));  // static
  CHECK(api->struct_size == sizeof(spmla_api_t));
  CHECK(api->abi_version == spmla_abi_version());
#define SAME(member, fn)                                                     \
  do {                                                                       \
    INFO(#member);                                                           \
    CHECK(api->member != nullptr);                                           \
    CHECK(reinterpret_cast<const void *>(api->member) ==                     \
          reinterpret_cast<const void *>(&fn));                              \
  } while (0)
  SAME(version_number, spmla_version_number);
  SAME(version_string, spmla_version_string);
  SAME(abi_version_fn, spmla_abi_version);
  SAME(status_string, spmla_status_string);
  SAME(last_error_message, spmla_last_error_message);
  SAME(clear_last_error, spmla_clear_last_error);
  SAME(dtype_size, spmla_dtype_size);
  SAME(dtype_name, spmla_dtype_name);
  SAME(tensor_make_contiguous, spmla_tensor_make_contiguous);
  SAME(kv_cache_page_bytes, spmla_kv_cache_page_bytes);
  SAME(kv_cache_size_bytes, spmla_kv_cache_size_bytes);
  SAME(backend_count, spmla_backend_count);
  SAME(backend_get_info, spmla_backend_get_info);
  SAME(device_get_info, spmla_device_get_info);
  SAME(handle_create, spmla_handle_create);
  SAME(handle_destroy, spmla_handle_destroy);
  SAME(handle_backend_name, spmla_handle_backend_name);
  SAME(handle_device, spmla_handle_device);
  SAME(device_malloc, spmla_device_malloc);
  SAME(device_free, spmla_device_free);
  SAME(memcpy_fn, spmla_memcpy);
  SAME(memset_fn, spmla_memset);
  SAME(stream_synchronize, spmla_stream_synchronize);
  SAME(event_create, spmla_event_create);
  SAME(event_destroy, spmla_event_destroy);
  SAME(event_record, spmla_event_record);
  SAME(event_elapsed_ms, spmla_event_elapsed_ms);
  SAME(sparse_attention_get_workspace_size, spmla_sparse_attention_get_workspace_size);
  SAME(sparse_attention_plan, spmla_sparse_attention_plan);
  SAME(sparse_attention_run, spmla_sparse_attention_run);
  SAME(indices_to_slots_run, spmla_indices_to_slots_run);
  SAME(window_indices_run, spmla_window_indices_run);
  SAME(indexer_logits_get_workspace_size, spmla_indexer_logits_get_workspace_size);
  SAME(indexer_logits_run, spmla_indexer_logits_run);
  SAME(indexer_logits_paged_get_workspace_size, spmla_indexer_logits_paged_get_workspace_size);
  SAME(indexer_logits_paged_run, spmla_indexer_logits_paged_run);
  SAME(topk_per_row_get_workspace_size, spmla_topk_per_row_get_workspace_size);
  SAME(topk_per_row_run, spmla_topk_per_row_run);
  SAME(kv_cache_store_run, spmla_kv_cache_store_run);
  SAME(kv_cache_gather_run, spmla_kv_cache_gather_run);
  SAME(handle_set_option, spmla_handle_set_option);
  SAME(handle_get_option, spmla_handle_get_option);
#undef SAME
  // Every pointer slot after the two header fields is non-NULL (catches a member added to the
  // struct but not to the table).
  const size_t first = offsetof(spmla_api_t, version_number);
  for (size_t off = first; off + sizeof(void *) <= sizeof(spmla_api_t); off += sizeof(void *)) {
    void *p;
    std::memcpy(&p, reinterpret_cast<const char *>(api) + off, sizeof p);
    INFO("offset " << off);
    CHECK(p != nullptr);
  }
  CHECK(api->version_number() == SPMLA_VERSION_NUMBER);
}

TEST_CASE("abi: spmla_get_api refuses another ABI major", "[abi]") {
  spmla_clear_last_error();
  CHECK(spmla_get_api(SPMLA_ABI_VERSION_MAJOR + 1) == nullptr);
  const std::string msg = spmla_last_error_message();
  CHECK(msg.find("spmla_get_api: abi_major") == 0);
  CHECK(msg.find("got " + std::to_string(SPMLA_ABI_VERSION_MAJOR + 1)) != std::string::npos);
  CHECK(msg.find("expected " + std::to_string(SPMLA_ABI_VERSION_MAJOR)) != std::string::npos);
  CHECK(spmla_get_api(0) == nullptr);
}

TEST_CASE("abi: status strings", "[abi]") {
  const char *names[] = {"SPMLA_STATUS_SUCCESS",          "SPMLA_STATUS_INVALID_ARGUMENT",
                         "SPMLA_STATUS_UNSUPPORTED",      "SPMLA_STATUS_BACKEND_UNAVAILABLE",
                         "SPMLA_STATUS_OUT_OF_MEMORY",    "SPMLA_STATUS_WORKSPACE_TOO_SMALL",
                         "SPMLA_STATUS_MISALIGNED",       "SPMLA_STATUS_SIZE_OVERFLOW",
                         "SPMLA_STATUS_DEVICE_ERROR",     "SPMLA_STATUS_ABI_MISMATCH",
                         "SPMLA_STATUS_INTERNAL",         "SPMLA_STATUS_HANDLE_BUSY"};
  for (int i = 0; i <= 11; ++i)
    CHECK(std::string(spmla_status_string(static_cast<spmla_status_t>(i))) == names[i]);
  CHECK(SPMLA_STATUS_INTERNAL == 10);
  CHECK(SPMLA_STATUS_HANDLE_BUSY == 11);  // ABI 1.1
  for (int bad : {12, 13, -1, 1000})
    CHECK(std::string(spmla_status_string(static_cast<spmla_status_t>(bad))) ==
          "SPMLA_STATUS_UNKNOWN");
}

TEST_CASE("abi: dtype sizes and names", "[abi]") {
  struct {
    spmla_dtype_t d;
    size_t size;
    const char *name;
  } t[] = {{SPMLA_DTYPE_BF16, 2, "bf16"},           {SPMLA_DTYPE_FP16, 2, "fp16"},
           {SPMLA_DTYPE_FP32, 4, "fp32"},           {SPMLA_DTYPE_INT32, 4, "int32"},
           {SPMLA_DTYPE_INT64, 8, "int64"},         {SPMLA_DTYPE_UINT8, 1, "uint8"},
           {SPMLA_DTYPE_FP8_E4M3FN, 1, "fp8_e4m3fn"}, {SPMLA_DTYPE_FP8_E4M3FNUZ, 1, "fp8_e4m3fnuz"},
           {SPMLA_DTYPE_UE8M0, 1, "ue8m0"},         {SPMLA_DTYPE_INVALID, 0, "invalid"}};
  for (auto &e : t) {
    CHECK(spmla_dtype_size(e.d) == e.size);
    CHECK(std::string(spmla_dtype_name(e.d)) == e.name);
  }
  CHECK(spmla_dtype_size(static_cast<spmla_dtype_t>(42)) == 0);
  CHECK(std::string(spmla_dtype_name(static_cast<spmla_dtype_t>(42))) == "invalid");
}

TEST_CASE("abi: spmla_tensor_make_contiguous", "[abi]") {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  int dummy = 0;
  const int64_t shape[3] = {2, 3, 5};
  REQUIRE(spmla_tensor_make_contiguous(&t, &dummy, SPMLA_DTYPE_FP32, 3, shape) ==
          SPMLA_STATUS_SUCCESS);
  CHECK(t.struct_size == sizeof(spmla_tensor_t));
  CHECK(t.data == &dummy);
  CHECK(t.dtype == SPMLA_DTYPE_FP32);
  CHECK(t.ndim == 3);
  CHECK(t.shape[0] == 2);
  CHECK(t.shape[2] == 5);
  CHECK(t.strides[0] == 15);
  CHECK(t.strides[1] == 5);
  CHECK(t.strides[2] == 1);
  CHECK(spmla_tensor_make_contiguous(&t, nullptr, SPMLA_DTYPE_INT32, 0, nullptr) ==
        SPMLA_STATUS_SUCCESS);
  CHECK(t.ndim == 0);

  spmla_tensor_t keep = t;
  const int64_t neg[2] = {2, -1};
  CHECK(spmla_tensor_make_contiguous(&t, nullptr, SPMLA_DTYPE_INT32, 2, neg) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()).find("shape[1]") != std::string::npos);
  CHECK(std::memcmp(&t, &keep, sizeof t) == 0);
  CHECK(spmla_tensor_make_contiguous(&t, nullptr, SPMLA_DTYPE_INT32, 9, shape) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()).find("ndim") != std::string::npos);
  CHECK(spmla_tensor_make_contiguous(&t, nullptr, SPMLA_DTYPE_INT32, -1, shape) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_tensor_make_contiguous(nullptr, nullptr, SPMLA_DTYPE_INT32, 1, shape) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_tensor_make_contiguous(&t, nullptr, SPMLA_DTYPE_INT32, 2, nullptr) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  const int64_t huge[4] = {int64_t(1) << 40, int64_t(1) << 40, 1 << 20, 2};
  CHECK(spmla_tensor_make_contiguous(&t, nullptr, SPMLA_DTYPE_INT32, 4, huge) ==
        SPMLA_STATUS_SIZE_OVERFLOW);
  CHECK(std::memcmp(&t, &keep, sizeof t) == 0);
}

TEST_CASE("abi: the last error is per thread", "[abi]") {
  spmla_clear_last_error();
  CHECK(std::string(spmla_last_error_message()).empty());
  CHECK(spmla_handle_device(nullptr, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  const std::string mine = spmla_last_error_message();
  CHECK(mine == "spmla_handle_device: handle: expected a handle from spmla_handle_create, got NULL");
  std::string other = "unset";
  std::thread th([&] { other = spmla_last_error_message(); });
  th.join();
  CHECK(other.empty());
  CHECK(std::string(spmla_last_error_message()) == mine);
  spmla_clear_last_error();
  CHECK(std::string(spmla_last_error_message()).empty());
}

TEST_CASE("abi: handles, memory and event helpers on cpu", "[abi]") {
  spmla_handle_t h = nullptr;
  REQUIRE(spmla_handle_create("cpu", 0, &h) == SPMLA_STATUS_SUCCESS);
  REQUIRE(h != nullptr);
  CHECK(std::string(spmla_handle_backend_name(h)) == "cpu");
  CHECK(spmla_handle_backend_name(nullptr) == nullptr);
  int32_t dev = -7;
  CHECK(spmla_handle_device(h, &dev) == SPMLA_STATUS_SUCCESS);
  CHECK(dev == 0);
  CHECK(spmla_handle_device(h, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);

  void *p = nullptr;
  REQUIRE(spmla_device_malloc(h, 1000, &p) == SPMLA_STATUS_SUCCESS);
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(p) % 256 == 0);
  CHECK(spmla_memset(h, p, 0x5A, 1000, nullptr) == SPMLA_STATUS_SUCCESS);
  unsigned char host[1000];
  CHECK(spmla_memcpy(h, host, p, 1000, SPMLA_MEMCPY_DEVICE_TO_HOST, nullptr) ==
        SPMLA_STATUS_SUCCESS);
  CHECK(host[0] == 0x5A);
  CHECK(host[999] == 0x5A);
  host[3] = 0x11;
  CHECK(spmla_memcpy(h, p, host, 1000, SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr) ==
        SPMLA_STATUS_SUCCESS);
  CHECK(static_cast<unsigned char *>(p)[3] == 0x11);
  CHECK(spmla_memcpy(h, p, host, 10, static_cast<spmla_memcpy_kind_t>(9), nullptr) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()).find("spmla_memcpy: kind") == 0);
  CHECK(spmla_memcpy(h, nullptr, host, 10, SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_memcpy(h, p, nullptr, 10, SPMLA_MEMCPY_HOST_TO_DEVICE, nullptr) ==
        SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_memset(h, nullptr, 0, 10, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_memset(nullptr, p, 0, 10, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_stream_synchronize(h, nullptr) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_stream_synchronize(nullptr, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_device_free(h, p) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_device_free(h, nullptr) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_device_malloc(h, 10, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_device_malloc(nullptr, 10, &p) == SPMLA_STATUS_INVALID_ARGUMENT);

  spmla_event_t e0 = nullptr, e1 = nullptr;
  REQUIRE(spmla_event_create(h, &e0) == SPMLA_STATUS_SUCCESS);
  REQUIRE(spmla_event_create(h, &e1) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_event_record(h, e0, nullptr) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_event_record(h, e1, nullptr) == SPMLA_STATUS_SUCCESS);
  float ms = -1.0f;
  CHECK(spmla_event_elapsed_ms(h, e0, e1, &ms) == SPMLA_STATUS_SUCCESS);
  CHECK(ms >= 0.0f);
  CHECK(spmla_event_elapsed_ms(h, e0, e1, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_event_elapsed_ms(h, nullptr, e1, &ms) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_event_record(h, nullptr, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_event_create(h, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_event_destroy(h, e0) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_event_destroy(h, e1) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_event_destroy(h, nullptr) == SPMLA_STATUS_SUCCESS);

  CHECK(spmla_handle_destroy(h) == SPMLA_STATUS_SUCCESS);
  CHECK(spmla_handle_destroy(nullptr) == SPMLA_STATUS_SUCCESS);
}

TEST_CASE("abi: device and backend info arguments", "[abi]") {
  spmla_device_info_t info = SPMLA_DEVICE_INFO_INIT;
  REQUIRE(spmla_device_get_info("cpu", 0, &info) == SPMLA_STATUS_SUCCESS);
  CHECK(std::strlen(info.name) > 0);
  CHECK(std::string(info.arch) == "cpu");
  spmla_device_info_t small = SPMLA_DEVICE_INFO_INIT;
  small.struct_size = 8;
  CHECK(spmla_device_get_info("cpu", 0, &small) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()).find("info->struct_size") != std::string::npos);
  CHECK(small.name[0] == '\0');
  CHECK(spmla_device_get_info("cpu", 1, &info) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(spmla_last_error_message()).find("device") != std::string::npos);
  CHECK(spmla_device_get_info("cpu", 0, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_device_get_info("no-such-backend", 0, &info) == SPMLA_STATUS_BACKEND_UNAVAILABLE);

  int32_t n = 0;
  CHECK(spmla_backend_count(&n) == SPMLA_STATUS_SUCCESS);
  CHECK(n >= 3);
  CHECK(spmla_backend_count(nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  spmla_backend_info_t bi = SPMLA_BACKEND_INFO_INIT;
  CHECK(spmla_backend_get_info(n, &bi) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_backend_get_info(-1, &bi) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(bi.name == nullptr);
  CHECK(spmla_backend_get_info(0, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  bi.struct_size = 4;
  CHECK(spmla_backend_get_info(0, &bi) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(bi.name == nullptr);
}
