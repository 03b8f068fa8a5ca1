// spmla — command-line tool of the spmla library: `info`, `run` (one DeepSeek sparse-attention step
// checked against an fp64 computation) and `bench`.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>

#include "check.h"
#include "cli.h"

using namespace spmla_cli;

namespace spmla_cli {
std::string format_bytes(double b) {
  char buf[64];
  const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int i = 0;
  while (b >= 1024 && i < 6) b /= 1024, ++i;
  std::snprintf(buf, sizeof buf, i ? "%.1f %s" : "%.0f %s", b, unit[i]);
  return buf;
}
}  // namespace spmla_cli

namespace {
int run_main(int argc, char **argv) {
  CLI::App app{"spmla: portable sparse MLA (DeepSeek-V3.2 / V4 sparse attention)\n"
               "built against spmla " SPMLA_VERSION_STRING};
  app.set_version_flag("--version", std::string("spmla ") + SPMLA_VERSION_STRING);
  app.require_subcommand(1);
  const std::vector<std::string> backends_help = {"auto", "cpu", "cuda", "hip"};

  // --- info ---------------------------------------------------------------------------------
  InfoOptions io;
  CLI::App *info = app.add_subcommand("info", "Versions, backends (available or why not) and devices");
  info->add_flag("--json", io.json, "Print one JSON object");

  // --- run ----------------------------------------------------------------------------------
  RunOptions ro;
  CLI::App *run = app.add_subcommand(
      "run",
      "One DeepSeek sparse-attention step on random data (KV store, indexer, top-k, slots, "
      "attention), checked against an independent fp64 computation. Exit 0 iff the check passes.");
  run->add_option("--model", ro.model,
                  "v32 (DeepSeek-V3.2), v4 (DeepSeek-V4) or v41 (DeepSeek-V4.1: V41_FP4 top-k cache + V41_FP8 window)")
      ->check(CLI::IsMember({"v32", "v4", "v41"}))->capture_default_str();
  run->add_option("--phase", ro.phase, "decode or prefill")
      ->check(CLI::IsMember({"decode", "prefill"}))->capture_default_str();
  run->add_option("--backend", ro.backend, "auto, cpu, cuda, hip or a plugin's name")->capture_default_str();
  run->add_option("--device", ro.device, "Device ordinal")->capture_default_str();
  run->add_flag("--json", ro.json, "Print one JSON object on stdout");
  run->add_option("--batch", ro.batch, "Requests (default: decode 2, prefill 1)")->check(CLI::Range(1, 1 << 20));
  run->add_option("--tokens-per-request,--next-n", ro.tokens_per_request,
                  "Query tokens per request (default: decode 2 (MTP), prefill 256)")->check(CLI::Range(1, 1 << 24));
  run->add_option("--heads", ro.heads, "Query heads H, 1..128 (default: v32 128, v4 and v41 64)")->check(CLI::Range(1, 128));
  run->add_option("--topk", ro.topk, "Top-k width K of the index list (default: v32 2048, v4 and v41 512)")->check(CLI::Range(1, 1 << 20));
  run->add_option("--context", ro.context,
                  "Tokens in each request's context, queries included (default 4096, CPU-friendly; the "
                  "models' benchmark context is 32768)")->check(CLI::Range(1, 1 << 26));
  run->add_option("--block-size", ro.block_size, "Tokens per cache page")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  run->add_option("--window", ro.window, "Sliding-window width of the v4 / v41 window cache (default 128; 0 = none)")->check(CLI::Range(0, 1 << 20));
  run->add_option("--indexer-heads", ro.indexer_heads, "Indexer heads Hi")->check(CLI::Range(1, 64))->capture_default_str();
  run->add_option("--indexer-dim", ro.indexer_dim, "Indexer head dim Di (64 or 128)")->check(CLI::IsMember({64, 128}))->capture_default_str();
  run->add_option("--seed", ro.seed, "Random seed")->capture_default_str();
  run->add_option("--check-tokens", ro.check_tokens, "Query tokens checked against fp64 (0 = timing only: no check, exit 0)")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  run->add_option("--repeats", ro.repeats, "Attention calls timed (median reported)")->check(CLI::Range(1, 100000))->capture_default_str();
  run->add_option("--fp8-flavor", ro.fp8_flavor,
                  "FP8 flavor of every cache: e4m3fn or e4m3fnuz (v41's V41_FP4 cache is always e4m3fn)")
      ->check(CLI::IsMember({"e4m3fn", "e4m3fnuz"}))->capture_default_str();
  run->add_option("--arrangement", ro.arrangement,
                  "Page arrangement of v41's caches: per_token (FlashMLA from 2026-09-30) or page_blocked (2026-09-10)")
      ->check(CLI::IsMember({"per_token", "page_blocked"}))->capture_default_str();
  run->add_flag_function("-v,--verbose", [&](int64_t) { ro.verbose = 1; }, "Progress lines from the start");
  run->add_flag_function("-q,--quiet", [&](int64_t) { ro.verbose = -1; }, "No progress lines");

  // --- bench --------------------------------------------------------------------------------
  BenchOptions bo;
  CLI::App *bench = app.add_subcommand("bench", "Time the operations: median of repeats, ratio to measured ceilings");
  bench->add_option("--op", bo.op, "sparse_attention, topk, indexer, store, gather or all")
      ->check(CLI::IsMember({"sparse_attention", "topk", "indexer", "store", "gather", "all"}))->capture_default_str();
  bench->add_option("--backend", bo.backend, "auto, cpu, cuda, hip or a plugin's name")->capture_default_str();
  bench->add_option("--device", bo.device, "Device ordinal")->capture_default_str();
  bench->add_flag("--json", bo.json, "Print one JSON object");
  bench->add_option("--repeats", bo.repeats, "Timed calls per case (median reported)")->check(CLI::Range(1, 100000))->capture_default_str();
  bench->add_option("--warmup", bo.warmup, "Untimed calls before timing")->check(CLI::Range(0, 100000))->capture_default_str();
  bench->add_option("--sizes", bo.sizes, "small (CPU-sized), spec (docs/SPEC.md benchmark sizes) or auto (small on cpu)")
      ->check(CLI::IsMember({"auto", "small", "spec"}))->capture_default_str();
  bench->add_option("--peak-tflops", bo.peak_tflops, "Compute ceiling to compare with (default: measured on cpu, none elsewhere)");
  bench->add_option("--peak-gbps", bo.peak_gbps, "Bandwidth ceiling to compare with (default: measured copy bandwidth)");
  bench->add_option("--seed", bo.seed, "Random seed")->capture_default_str();
  bench->add_option("--shape", bo.shape, "Only the cases whose shape label contains this text, or one of several separated by '|' "
                  "(e.g. 'prefill T=4096' or 'BF16|v41 decode')");
  bench->add_option("--l2-flush", bo.l2_flush,
                    "GPU: memset (overwrite 256 MiB before each timed call: cold, but dirty, L2) or none "
                    "(calls back to back; for studying how much the flush itself costs an op)")
      ->check(CLI::IsMember({"memset", "none"}))->capture_default_str();
  bench->add_option("--batch-invariant", bo.batch_invariant,
                    "The handle option SPMLA_OPTION_BATCH_INVARIANT: off, on, or both (every case with it off "
                    "then on, the on row giving its time over the off row's: the option's cost)")
      ->check(CLI::IsMember({"off", "on", "both"}))->capture_default_str();

  CLI11_PARSE(app, argc, argv);

  if (*info) return cmd_info(io);
  if (*run) return cmd_run(ro);
  if (*bench) return cmd_bench(bo);
  return 1;
}
}  // namespace

// No exception reaches the user (or std::terminate): each becomes a message and exit status 1.
int main(int argc, char **argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::bad_alloc &) {
    // The memory estimate (memory.h) refuses what cannot fit; this is what it did not foresee.
    std::fprintf(stderr, "spmla: error: out of host memory (std::bad_alloc); lower the size options "
                         "(--batch, --tokens-per-request, --context, --heads, --topk, or bench --sizes/--shape)\n");
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "spmla: error: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "spmla: error: unknown exception\n");
    return 1;
  }
}
