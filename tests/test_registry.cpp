// test_registry.cpp — the backend registry and the plugin loader. The registry is built once
// per process, so plugin scenarios run in a fresh process: tests/plugins/registry_probe, started
// with SPMLA_BACKEND_PATH pointing at the fake plugins of tests/plugins/.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "spmla.h"

namespace {

const std::string kPluginDir = SPMLA_TEST_PLUGIN_DIR;
const std::string kProbe = kPluginDir + "/registry_probe";

struct Result {
  int status = -1;
  std::string out;
};

// `timeout_s` > 0 runs the probe under timeout(1): a hang becomes exit status 124.
Result run_probe(const std::string &backend_path, const std::string &args, int timeout_s = 0) {
  const std::string runner =
      timeout_s > 0 ? "timeout -k 5 " + std::to_string(timeout_s) + " " : std::string();
  const std::string cmd = "SPMLA_BACKEND_PATH='" + backend_path + "' " + runner + "'" + kProbe +
                          "' " + args + " 2>&1";
  Result r;
  FILE *p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

struct Entry {
  bool available;
  int devices;
  std::string library, reason;
};

std::map<std::string, Entry> parse_list(const std::string &out, std::vector<std::string> *order) {
  std::map<std::string, Entry> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("backend|", 0) != 0) continue;
    std::vector<std::string> f;
    size_t start = 0;
    for (int i = 0; i < 5; ++i) {
      size_t bar = line.find('|', start);
      f.push_back(line.substr(start, bar - start));
      start = bar + 1;
    }
    f.push_back(line.substr(start));  // reason may contain anything
    m[f[1]] = Entry{f[2] == "1", std::stoi(f[3]), f[4], f[5]};
    if (order) order->push_back(f[1]);
  }
  return m;
}

std::map<std::string, std::string> parse_kv(const std::string &out) {
  std::map<std::string, std::string> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) m[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return m;
}

bool has(const std::string &s, const std::string &sub) { return s.find(sub) != std::string::npos; }

}  // namespace

TEST_CASE("registry: cpu is available, cuda and hip are always listed", "[registry]") {
  int32_t n = 0;
  REQUIRE(spmla_backend_count(&n) == SPMLA_STATUS_SUCCESS);
  REQUIRE(n >= 3);
  std::vector<spmla_backend_info_t> infos(n);
  for (int32_t i = 0; i < n; ++i) {
    infos[i] = SPMLA_BACKEND_INFO_INIT;
    REQUIRE(spmla_backend_get_info(i, &infos[i]) == SPMLA_STATUS_SUCCESS);
    REQUIRE(infos[i].name != nullptr);
    REQUIRE(infos[i].reason != nullptr);
    REQUIRE(infos[i].library != nullptr);
  }
  CHECK(std::string(infos[0].name) == "cpu");
  CHECK(infos[0].available == 1);
  CHECK(infos[0].device_count == 1);
  CHECK(std::string(infos[0].reason).empty());
  CHECK(std::string(infos[0].library).empty());
  CHECK(std::string(infos[1].name) == "cuda");
  CHECK(std::string(infos[2].name) == "hip");
  bool any_gpu = false;
  for (int i = 1; i <= 2; ++i) {
    INFO(infos[i].name << ": " << infos[i].reason);
    if (infos[i].available) {
      any_gpu = true;
      CHECK(infos[i].device_count > 0);
      continue;
    }
    CHECK(std::string(infos[i].reason).size() > 0);
    CHECK(infos[i].device_count == 0);
    spmla_handle_t h = nullptr;
    CHECK(spmla_handle_create(infos[i].name, 0, &h) == SPMLA_STATUS_BACKEND_UNAVAILABLE);
    CHECK(h == nullptr);
    const std::string msg = spmla_last_error_message();
    CHECK(has(msg, std::string("backend '") + infos[i].name + "' is unavailable: "));
    CHECK(has(msg, infos[i].reason));
  }
  // auto: the first available of cuda, hip, cpu.
  spmla_handle_t h = nullptr;
  REQUIRE(spmla_handle_create(nullptr, 0, &h) == SPMLA_STATUS_SUCCESS);
  const std::string picked = spmla_handle_backend_name(h);
  spmla_handle_destroy(h);
  REQUIRE(spmla_handle_create("auto", 0, &h) == SPMLA_STATUS_SUCCESS);
  CHECK(std::string(spmla_handle_backend_name(h)) == picked);
  spmla_handle_destroy(h);
  if (!any_gpu) CHECK(picked == "cpu");
  if (infos[1].available) CHECK(picked == "cuda");

  // Unknown names and bad devices.
  h = nullptr;
  CHECK(spmla_handle_create("tpu", 0, &h) == SPMLA_STATUS_BACKEND_UNAVAILABLE);
  CHECK(h == nullptr);
  const std::string msg = spmla_last_error_message();
  CHECK(has(msg, "spmla_handle_create: backend: expected one of cpu, cuda, hip"));
  CHECK(has(msg, "\"tpu\""));
  CHECK(spmla_handle_create("cpu", 1, &h) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(has(spmla_last_error_message(), "device"));
  CHECK(spmla_handle_create("cpu", -1, &h) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(spmla_handle_create("cpu", 0, nullptr) == SPMLA_STATUS_INVALID_ARGUMENT);
  CHECK(h == nullptr);
}

TEST_CASE("registry: every broken plugin is unavailable with its reason", "[registry]") {
  const Result r = run_probe(kPluginDir, "list");
  INFO(r.out);
  REQUIRE(r.status == 0);
  std::vector<std::string> order;
  auto m = parse_list(r.out, &order);
  REQUIRE(order.size() >= 3);
  CHECK(order[0] == "cpu");
  CHECK(order[1] == "cuda");
  CHECK(order[2] == "hip");
  // Plugins after the fixed three, in name order within the directory.
  std::vector<std::string> rest(order.begin() + 3, order.end());
  CHECK(std::is_sorted(rest.begin(), rest.end()));
  for (const char *n : {"fake", "badabi", "nullentry", "initfail", "garbage", "nosym", "small", "nodev"})
    REQUIRE(m.count(n) == 1);

  CHECK(m["fake"].available);
  CHECK(m["fake"].devices == 2);
  CHECK(m["fake"].reason.empty());
  CHECK(m["fake"].library == kPluginDir + "/libspmla_backend_fake.so");

  for (const char *n : {"badabi", "nullentry", "initfail", "garbage", "nosym", "small", "nodev"}) {
    INFO(n << ": " << m[n].reason);
    CHECK_FALSE(m[n].available);
    CHECK(m[n].devices == 0);
    CHECK(m[n].library == kPluginDir + "/libspmla_backend_" + n + ".so");
  }
  CHECK(m["badabi"].reason == "plugin ABI 2.0, libspmla expects 1.x");
  CHECK(has(m["nullentry"].reason, "spmla_backend_entry returned NULL"));
  CHECK(has(m["initfail"].reason, "init() failed"));
  CHECK(has(m["initfail"].reason, "fake init failure: the flux capacitor is missing"));
  CHECK(has(m["garbage"].reason, "dlopen failed: "));
  CHECK(has(m["garbage"].reason, "libspmla_backend_garbage.so"));
  CHECK(has(m["nosym"].reason, "missing symbol spmla_backend_entry"));
  CHECK(has(m["small"].reason, "struct_size 16 too small"));
  CHECK(has(m["nodev"].reason, "no devices"));

  // A backend that was not found names every directory searched, in order.
  for (const char *n : {"cuda", "hip"}) {
    if (!m[n].library.empty() || m[n].available) continue;
    INFO(n << ": " << m[n].reason);
    CHECK(has(m[n].reason, std::string("libspmla_backend_") + n + ".so not found (searched: " +
                               kPluginDir + ", "));
  }
}

TEST_CASE("registry: search path order, empty and missing entries", "[registry]") {
  const Result r = run_probe("/nonexistent/spmla-a::" + kPluginDir + ":" + kPluginDir, "list");
  INFO(r.out);
  REQUIRE(r.status == 0);
  std::vector<std::string> order;
  auto m = parse_list(r.out, &order);
  CHECK(m["fake"].available);
  CHECK(std::count(order.begin(), order.end(), "fake") == 1);  // found twice, listed once
  for (const char *n : {"cuda", "hip"}) {
    if (!m[n].library.empty()) continue;
    CHECK(has(m[n].reason, "(searched: /nonexistent/spmla-a, " + kPluginDir + ", "));
  }
  // Without SPMLA_BACKEND_PATH the fake plugins are not seen.
  const Result none = run_probe("", "list");
  REQUIRE(none.status == 0);
  CHECK_FALSE(has(none.out, "backend|fake|"));
}

TEST_CASE("registry: dispatch reaches the good fake backend", "[registry]") {
  const Result r = run_probe(kPluginDir, "dispatch");
  INFO(r.out);
  CHECK(r.status == 0);
  auto kv = parse_kv(r.out);
  CHECK(kv["create_fake"] == "SPMLA_STATUS_SUCCESS");
  CHECK(kv["handle_backend"] == "fake");
  CHECK(kv["create_fake_dev2"] == "SPMLA_STATUS_INVALID_ARGUMENT");
  CHECK(has(kv["device_info"], "name=fake device 1 arch=fake"));
  CHECK(has(kv["unknown"], "SPMLA_STATUS_BACKEND_UNAVAILABLE"));
  CHECK(has(r.out, "cpu, cuda, hip, badabi, fake,"));
  CHECK(has(kv["badabi"], "backend 'badabi' is unavailable: plugin ABI 2.0, libspmla expects 1.x"));
  // A plugin without context_set_option (plugin ABI 1.2) keeps the default options only.
  CHECK(kv["opt_on"] ==
        "SPMLA_STATUS_UNSUPPORTED message=spmla_handle_set_option: backend 'fake' does not implement "
        "context_set_option (plugin ABI 1.2): it cannot honour SPMLA_OPTION_BATCH_INVARIANT = 1");
  CHECK(kv["opt_off"] == "SPMLA_STATUS_SUCCESS");
  CHECK(kv["opt_get"] == "SPMLA_STATUS_SUCCESS value=0");
  CHECK(has(kv["sa_workspace"], "bytes=4096"));
  CHECK(has(kv["sa_plan_small"], "SPMLA_STATUS_WORKSPACE_TOO_SMALL"));
  CHECK(has(r.out, "workspace_bytes: expected >= 4096 (the backend's workspace query), got 4095"));
  CHECK(kv["sa_run_null_ws"] == "SPMLA_STATUS_INVALID_ARGUMENT");
  CHECK(kv["sa_untouched"] == "1");
  CHECK(kv["sa_plan"] == "SPMLA_STATUS_SUCCESS");
  CHECK(kv["sa_run"] == "SPMLA_STATUS_SUCCESS out_ok=1 lse=42");
  CHECK(has(r.out, "lse=42"));
  CHECK(kv["gather"] == "SPMLA_STATUS_SUCCESS out_ok=1");
  // ABI 1.2: V41 caches are refused for a plugin whose table does not name them (the fake
  // plugin's last_kv_layout is 0: the 1.0 layouts), before the plugin is called.
  CHECK(kv["v41_gather_0"] == "SPMLA_STATUS_UNSUPPORTED untouched=1");
  CHECK(kv["v41_gather_msg_0"] == "spmla_kv_cache_gather_run: layout V41_FP8 is not served by the fake backend "
                                  "(its kernels read the layouts up to INDEXER_FP8; the cpu backend serves every layout)");
  CHECK(kv["v41_gather_1"] == "SPMLA_STATUS_UNSUPPORTED untouched=1");
  CHECK(has(kv["v41_gather_msg_1"], "layout V41_FP4 is not served by the fake backend"));
  CHECK(kv["v41_store_0"] == "SPMLA_STATUS_UNSUPPORTED untouched=1");
  CHECK(kv["v41_store_1"] == "SPMLA_STATUS_UNSUPPORTED untouched=1");
  CHECK(has(r.out, "topk=SPMLA_STATUS_SUCCESS first=5555"));
  CHECK(has(r.out, "elapsed=SPMLA_STATUS_SUCCESS ms=1.5"));
  CHECK(has(r.out, "malloc=SPMLA_STATUS_SUCCESS aligned=1"));
  CHECK(kv["dispatch"] == "ok");
}

TEST_CASE("registry: two threads creating handles at first use", "[registry]") {
  for (int round = 0; round < 3; ++round) {
    const Result r = run_probe(kPluginDir, "threads fake cpu");
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(has(r.out, "thread0=SPMLA_STATUS_SUCCESS backend=fake"));
    CHECK(has(r.out, "thread1=SPMLA_STATUS_SUCCESS backend=cpu"));
  }
  const Result r = run_probe("", "threads cpu auto");
  INFO(r.out);
  CHECK(r.status == 0);
  // In this process as well (the registry may already exist here).
  std::vector<std::thread> ts;
  std::vector<int> ok(8, 0);
  for (int i = 0; i < 8; ++i)
    ts.emplace_back([i, &ok] {
      for (int k = 0; k < 20; ++k) {
        spmla_handle_t h = nullptr;
        if (spmla_handle_create("cpu", 0, &h) == SPMLA_STATUS_SUCCESS && h) {
          ++ok[i];
          spmla_handle_destroy(h);
        }
      }
    });
  for (auto &t : ts) t.join();
  for (int v : ok) CHECK(v == 20);
}

TEST_CASE("registry: a FIFO, directory or device named like a plugin is skipped, never opened",
          "[registry]") {
  // dlopen of a FIFO blocks until a writer appears: before the loader checked the file type,
  // every spmla call of the process hung inside the registry's call_once.
  char tmpl[] = "/tmp/spmla-fifo-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const std::string fifo = dir + "/libspmla_backend_cuda.so";
  const std::string subdir = dir + "/libspmla_backend_x.so";
  const std::string devnull = dir + "/libspmla_backend_devnull.so";
  const std::string linked = dir + "/libspmla_backend_linked.so";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE(mkdir(subdir.c_str(), 0700) == 0);
  REQUIRE(symlink("/dev/null", devnull.c_str()) == 0);
  // A symlink to a regular file is a plugin like any other.
  REQUIRE(symlink((kPluginDir + "/libspmla_backend_fake.so").c_str(), linked.c_str()) == 0);

  const Result r = run_probe(dir, "list", 60);
  unlink(fifo.c_str());
  rmdir(subdir.c_str());
  unlink(devnull.c_str());
  unlink(linked.c_str());
  rmdir(dir.c_str());
  INFO(r.out);
  REQUIRE(r.status != 124);  // timed out: the loader blocked
  REQUIRE(r.status == 0);
  auto m = parse_list(r.out, nullptr);
  REQUIRE(m.count("cuda") == 1);
  REQUIRE(m.count("x") == 1);
  REQUIRE(m.count("devnull") == 1);
  REQUIRE(m.count("linked") == 1);
  if (m["cuda"].library.empty()) {  // no real CUDA plugin beside libspmla
    CHECK_FALSE(m["cuda"].available);
    CHECK(has(m["cuda"].reason, "skipped " + fifo + ": not a regular file (a FIFO)"));
  } else {
    CHECK(m["cuda"].library != fifo);
  }
  CHECK_FALSE(m["x"].available);
  CHECK(m["x"].library.empty());
  CHECK(has(m["x"].reason, "libspmla_backend_x.so not found (searched: " + dir));
  CHECK(has(m["x"].reason, "skipped " + subdir + ": not a regular file (a directory)"));
  CHECK_FALSE(m["devnull"].available);
  CHECK(has(m["devnull"].reason, "skipped " + devnull + ": not a regular file (a character device)"));
  CHECK(m["linked"].available);
  CHECK(m["linked"].library == linked);
}
