// spmla info: versions, every backend the registry knows (available or the reason why not), devices.
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "check.h"
#include "cli.h"

namespace spmla_cli {

namespace {
std::string str(const char *s) { return s ? s : ""; }

std::string abi_string(uint32_t v) { return std::to_string(v >> 16) + "." + std::to_string(v & 0xffff); }

// The entries of a ':'-separated SPMLA_BACKEND_PATH that are not directories. The loader skips
// them silently and falls back to the plugins beside libspmla, so a typo (or a folder name with a
// ':' in it) would otherwise go unnoticed. (The same splitting as plugin_search_dirs() in
// src/plugin_loader.cpp, which the CLI cannot call: it sees only the public ABI.)
std::vector<std::string> missing_path_dirs(const std::string &p) {
  std::vector<std::string> bad;
  size_t start = 0;
  while (start <= p.size()) {
    size_t colon = p.find(':', start);
    if (colon == std::string::npos) colon = p.size();
    const std::string d = p.substr(start, colon - start);
    struct stat st;
    if (!d.empty() && (stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) bad.push_back(d);
    start = colon + 1;
  }
  return bad;
}
}  // namespace

int cmd_info(const InfoOptions &o) {
  using nlohmann::json;
  json j;
  j["version"] = {{"compile_time", SPMLA_VERSION_STRING},
                  {"run_time", str(spmla_version_string())},
                  {"run_time_number", spmla_version_number()}};
  j["abi"] = {{"compile_time", abi_string((SPMLA_ABI_VERSION_MAJOR << 16) | SPMLA_ABI_VERSION_MINOR)},
              {"run_time", abi_string(spmla_abi_version())}};
  const char *path = std::getenv("SPMLA_BACKEND_PATH");
  j["backend_path_env"] = path ? json(path) : json(nullptr);
  const std::vector<std::string> missing = path ? missing_path_dirs(path) : std::vector<std::string>{};
  j["backend_path_not_dirs"] = missing;

  int32_t n = 0;
  SPMLA_CHECK(spmla_backend_count(&n));
  json backends = json::array();
  for (int32_t i = 0; i < n; ++i) {
    spmla_backend_info_t b = SPMLA_BACKEND_INFO_INIT;
    SPMLA_CHECK(spmla_backend_get_info(i, &b));
    json jb = {{"name", str(b.name)},
               {"available", b.available != 0},
               {"reason", str(b.reason)},
               {"device_count", b.device_count},
               {"library", str(b.library)}};
    json devs = json::array();
    for (int32_t d = 0; b.available && d < b.device_count; ++d) {
      spmla_device_info_t di = SPMLA_DEVICE_INFO_INIT;
      const spmla_status_t st = spmla_device_get_info(b.name, d, &di);
      if (st != SPMLA_STATUS_SUCCESS) {
        devs.push_back({{"index", d},
                        {"error", std::string(spmla_status_string(st)) + ": " + spmla_last_error_message()}});
        continue;
      }
      devs.push_back({{"index", d},
                      {"name", std::string(di.name)},
                      {"arch", std::string(di.arch)},
                      {"total_memory_bytes", di.total_memory_bytes},
                      {"multiprocessor_count", di.multiprocessor_count},
                      {"warp_size", di.warp_size},
                      {"fp8_e4m3fn_native", di.fp8_e4m3fn_native != 0},
                      {"fp8_e4m3fnuz_native", di.fp8_e4m3fnuz_native != 0}});
    }
    jb["devices"] = devs;
    backends.push_back(jb);
  }
  j["backends"] = backends;

  if (o.json) {
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::printf("spmla %s (run time %s), ABI %s (run time %s)\n", SPMLA_VERSION_STRING,
              j["version"]["run_time"].get<std::string>().c_str(),
              j["abi"]["compile_time"].get<std::string>().c_str(),
              j["abi"]["run_time"].get<std::string>().c_str());
  if (path) std::printf("SPMLA_BACKEND_PATH=%s\n", path);
  for (const std::string &d : missing)
    std::printf("  warning: SPMLA_BACKEND_PATH entry '%s' is not a directory (skipped)\n", d.c_str());
  std::printf("backends:\n");
  for (const json &b : backends) {
    const std::string lib = b["library"].get<std::string>();
    if (b["available"].get<bool>()) {
      std::printf("  %-6s available, %d device(s)%s%s\n", b["name"].get<std::string>().c_str(),
                  b["device_count"].get<int>(), lib.empty() ? " (built in)" : ", ", lib.c_str());
    } else {
      std::printf("  %-6s unavailable: %s%s%s\n", b["name"].get<std::string>().c_str(),
                  b["reason"].get<std::string>().c_str(), lib.empty() ? "" : " (", lib.empty() ? "" : (lib + ")").c_str());
    }
    for (const json &d : b["devices"]) {
      if (d.contains("error")) {
        std::printf("    [%d] error: %s\n", d["index"].get<int>(), d["error"].get<std::string>().c_str());
        continue;
      }
      std::printf("    [%d] %s, arch %s, %s, %d %s, warp %d, native fp8: e4m3fn %s, e4m3fnuz %s\n",
                  d["index"].get<int>(), d["name"].get<std::string>().c_str(),
                  d["arch"].get<std::string>().c_str(),
                  format_bytes(double(d["total_memory_bytes"].get<int64_t>())).c_str(),
                  d["multiprocessor_count"].get<int>(),
                  d["arch"].get<std::string>() == "cpu" ? "threads" : "multiprocessors",
                  d["warp_size"].get<int>(), d["fp8_e4m3fn_native"].get<bool>() ? "yes" : "no",
                  d["fp8_e4m3fnuz_native"].get<bool>() ? "yes" : "no");
    }
  }
  return 0;
}

}  // namespace spmla_cli
