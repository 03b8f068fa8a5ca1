// plugin_loader.cpp — dlopen loader of backend plugins. Every failure becomes
// "unavailable" with a reason: not found (entries that are not regular files are skipped and
// named, never opened), dlopen error, missing entry symbol, entry returned
// NULL, ABI major mismatch, table too small, init() failed, zero devices.
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <set>

#include "error.h"

namespace spmla {
namespace {

const char kPrefix[] = "libspmla_backend_";
const char kSuffix[] = ".so";

std::string self_dir() {
  Dl_info info;
  std::memset(&info, 0, sizeof info);
  if (!dladdr(reinterpret_cast<void *>(&spmla_version_number), &info) || !info.dli_fname)
    return "";
  std::string path = info.dli_fname;
  if (char *real = realpath(path.c_str(), nullptr)) {
    path = real;
    std::free(real);
  }
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// What a candidate plugin path is. Only a regular file (directly or through symlinks) is ever
// opened: dlopen of a FIFO blocks forever inside the registry's call_once (every spmla call
// of the process would hang), and a directory or device is never a plugin.
enum class PathKind { Missing, Regular, Other };
PathKind path_kind(const std::string &path, std::string *why) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {  // follows symlinks
    const int e = errno;
    if (e == ENOENT || e == ENOTDIR) return PathKind::Missing;
    *why = std::string("cannot stat (") + std::strerror(e) + ")";
    return PathKind::Other;
  }
  if (S_ISREG(st.st_mode)) return PathKind::Regular;
  const char *what = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a file";
  *why = std::string("not a regular file (") + what + ")";
  return PathKind::Other;
}

std::string join_dirs(const std::vector<std::string> &dirs) {
  std::string s;
  for (const auto &d : dirs) {
    if (!s.empty()) s += ", ";
    s += d;
  }
  return s.empty() ? std::string("(no directories)") : s;
}

std::string abi_str(uint32_t v) {
  return std::to_string(v >> 16) + "." + std::to_string(v & 0xffffu);
}

}  // namespace

std::vector<std::string> plugin_search_dirs() {
  std::vector<std::string> dirs;
  auto add = [&](const std::string &d) {
    if (d.empty()) return;
    if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
  };
  if (const char *env = std::getenv("SPMLA_BACKEND_PATH")) {
    std::string p = env;
    size_t start = 0;
    while (start <= p.size()) {
      size_t colon = p.find(':', start);
      if (colon == std::string::npos) colon = p.size();
      add(p.substr(start, colon - start));
      start = colon + 1;
    }
  }
  add(self_dir());
  return dirs;
}

std::vector<std::string> discover_plugin_names(const std::vector<std::string> &dirs) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  const size_t np = sizeof(kPrefix) - 1, ns = sizeof(kSuffix) - 1;
  for (const auto &d : dirs) {
    DIR *dir = opendir(d.c_str());
    if (!dir) continue;
    std::vector<std::string> here;
    while (struct dirent *e = readdir(dir)) {
      const std::string f = e->d_name;
      if (f.size() <= np + ns || f.compare(0, np, kPrefix) != 0 ||
          f.compare(f.size() - ns, ns, kSuffix) != 0)
        continue;
      here.push_back(f.substr(np, f.size() - np - ns));
    }
    closedir(dir);
    std::sort(here.begin(), here.end());
    for (auto &n : here)
      if (seen.insert(n).second) names.push_back(n);
  }
  return names;
}

void init_backend_table(const spmla_backend_table_t *t, LoadedPlugin *out) {
  out->available = false;
  out->table = nullptr;
  if (!t) {
    out->reason = "spmla_backend_entry returned NULL (the plugin cannot serve backend ABI " +
                  abi_str(SPMLA_BACKEND_ABI_VERSION) + ")";
    return;
  }
  if ((t->abi_version >> 16) != SPMLA_BACKEND_ABI_MAJOR) {
    // abi_version sits right after struct_size, so it is readable in any table.
    out->reason = "plugin ABI " + abi_str(t->abi_version) + ", libspmla expects " +
                  std::to_string(SPMLA_BACKEND_ABI_MAJOR) + ".x";
    return;
  }
  const size_t need = offsetof(spmla_backend_table_t, context_destroy) + sizeof(t->context_destroy);
  if (t->struct_size < need) {
    out->reason = "backend table struct_size " + std::to_string(t->struct_size) +
                  " too small: at least " + std::to_string(need) +
                  " bytes (name .. context_destroy) are required";
    return;
  }
  if (!t->init || !t->context_create || !t->context_destroy || !t->device_info) {
    out->reason = "backend table lacks init, device_info, context_create or context_destroy";
    return;
  }
  char reason[1024];
  std::memset(reason, 0, sizeof reason);
  int32_t count = 0;
  spmla_status_t st = SPMLA_STATUS_INTERNAL;
  try {
    st = t->init(backend_host(), &count, reason, sizeof reason);
  } catch (...) {
    st = SPMLA_STATUS_INTERNAL;
    std::strncpy(reason, "init() threw a C++ exception", sizeof reason - 1);
  }
  reason[sizeof reason - 1] = '\0';
  if (st != SPMLA_STATUS_SUCCESS) {
    out->reason = std::string("init() failed (") + spmla_status_string(st) + "): " +
                  (reason[0] ? reason : "no reason given");
    return;
  }
  if (count <= 0) {
    out->reason = std::string("no devices (init() found ") + std::to_string(count) + ")" +
                  (reason[0] ? std::string(": ") + reason : std::string());
    return;
  }
  out->device_count = count;
  out->table = t;
  out->available = true;
  out->reason.clear();
}

LoadedPlugin load_plugin(const std::string &name, const std::vector<std::string> &dirs) {
  LoadedPlugin p;
  p.name = name;
  const std::string file = kPrefix + name + kSuffix;
  std::string skipped;  // entries of that name that are not regular files, with the reason
  for (const auto &d : dirs) {
    const std::string path = d + "/" + file;
    std::string why;
    const PathKind k = path_kind(path, &why);
    if (k == PathKind::Regular) {
      p.library = path;
      break;
    }
    if (k == PathKind::Other) skipped += "; skipped " + path + ": " + why;
  }
  if (p.library.empty()) {
    p.reason = file + " not found (searched: " + join_dirs(dirs) + skipped + ")";
    return p;
  }
  dlerror();
  void *dl = dlopen(p.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *e = dlerror();
    p.reason = std::string("dlopen failed: ") + (e ? e : "unknown error");
    return p;
  }
  dlerror();
  void *sym = dlsym(dl, SPMLA_BACKEND_ENTRY_SYMBOL);
  if (!sym) {
    const char *e = dlerror();
    p.reason = std::string("missing symbol " SPMLA_BACKEND_ENTRY_SYMBOL " in ") + p.library +
               (e ? std::string(" (") + e + ")" : std::string());
    dlclose(dl);
    return p;
  }
  spmla_backend_entry_fn entry;
  static_assert(sizeof(entry) == sizeof(sym), "function and object pointers differ in size");
  std::memcpy(&entry, &sym, sizeof entry);
  const spmla_backend_table_t *table = nullptr;
  try {
    table = entry(SPMLA_BACKEND_ABI_VERSION);
  } catch (...) {
    p.reason = "spmla_backend_entry threw a C++ exception";
    return p;  // keep it loaded: its code may be referenced by the exception machinery
  }
  init_backend_table(table, &p);
  // A plugin that ran code stays loaded for the process lifetime (unloading libraries that
  // may have started threads or registered handlers is unsafe).
  p.dl = dl;
  return p;
}

}  // namespace spmla
