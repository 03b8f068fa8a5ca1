// Catch2 v2 main of the GPU tier: exits 77 (ctest SKIPPED) with the reason when the GPU backend
// cannot be used here, so a machine without a GPU never reports these tests as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gpu_test.h"

int main(int argc, char **argv) {
  const char *be = gpu_test::backend_name();
  spmla_handle_t h = nullptr;
  if (spmla_handle_create(be, 0, &h) != SPMLA_STATUS_SUCCESS) {
    std::string reason = spmla_last_error_message();
    int32_t n = 0;
    spmla_backend_count(&n);
    for (int32_t i = 0; i < n; ++i) {
      spmla_backend_info_t info = SPMLA_BACKEND_INFO_INIT;
      if (spmla_backend_get_info(i, &info) == SPMLA_STATUS_SUCCESS && info.name && strcmp(info.name, be) == 0 &&
          info.reason && *info.reason)
        reason = info.reason;
    }
    printf("SKIPPED: GPU backend '%s' is not available: %s\n", be, reason.c_str());
    return 77;
  }
  spmla_device_info_t di = SPMLA_DEVICE_INFO_INIT;
  spmla_device_get_info(be, 0, &di);
  printf("GPU tests on backend '%s', device 0: %s (%s, %d SMs)\n", be, di.name, di.arch, di.multiprocessor_count);
  spmla_handle_destroy(h);
  return Catch::Session().run(argc, argv);
}
