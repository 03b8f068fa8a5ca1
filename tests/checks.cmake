# checks.cmake — tests that are scripts rather than Catch2 cases (included by tests/CMakeLists.txt).
#  - check_symbols: the exported symbols of libspmla equal src/libspmla.symbols, all spmla_*.
#  - header_c99_* / header_cxx17_*: each public header compiles alone, with every *_INIT macro
#    used, as C99 and as C++17 with -Wall -Wextra -pedantic -Werror.
#  - check_install_deps: scripts/install-deps against a fake apt (offline machine, working apt).
#  - sim_pair_schedule: the sm90pair and sm90pairc2 kernels' barrier protocol over random interleavings
#    (tools/sim/pair_schedule.py: no deadlock, no buffer read while it is rewritten).
#  - sim_pair_softmax: the sm90pair kernel's chained-maximum softmax against an exact softmax
#    (tools/sim/pair_softmax.py).
#  - ncu_stalls_summary: tools/ncu_stalls.py on a small ncu source-page CSV (opcode shares, the
#    predicate guard and the thousands separator handled); ncu_stalls_summary_2025 the same on
#    ncu 2025's layout (one column per stall reason; the old parser missed its header row).
#  - sass_check_sample: tools/sass_check.py on SASS excerpts: the sm90ws copy that ptxas 13.0.88
#    emitted with unwritten uniform registers is found, the well-formed ones are not.
#  - sass_load_use_sample: tools/sass_check.py --load-use on the same excerpts: a load read a few
#    instructions after issue is listed, loads read after a branch or overwritten are not.
#  - sim_fp4_prmt: the Hopper kernels' E2M1 decode (prmt byte tables) on every code against SPEC's
#    values (tools/sim/fp4_prmt.py).

find_program(SPMLA_BASH bash)
find_program(SPMLA_NM NAMES nm)
if(SPMLA_BASH AND SPMLA_NM)
  add_test(NAME check_symbols
           COMMAND ${SPMLA_BASH} ${PROJECT_SOURCE_DIR}/scripts/check-symbols
                   $<TARGET_FILE:spmla> ${PROJECT_SOURCE_DIR}/src/libspmla.symbols)
  set_tests_properties(check_symbols PROPERTIES LABELS "abi")
endif()

if(SPMLA_BASH)
  add_test(NAME check_install_deps COMMAND ${SPMLA_BASH} ${PROJECT_SOURCE_DIR}/scripts/check-install-deps)
  set_tests_properties(check_install_deps PROPERTIES LABELS "scripts" TIMEOUT 60)
endif()

find_program(SPMLA_PYTHON3 python3)
if(SPMLA_PYTHON3)
  add_test(NAME sim_pair_schedule COMMAND ${SPMLA_PYTHON3} ${PROJECT_SOURCE_DIR}/tools/sim/pair_schedule.py --runs 3000)
  set_tests_properties(sim_pair_schedule PROPERTIES LABELS "scripts" TIMEOUT 120)
  add_test(NAME sim_pair_softmax COMMAND ${SPMLA_PYTHON3} ${PROJECT_SOURCE_DIR}/tools/sim/pair_softmax.py)
  set_tests_properties(sim_pair_softmax PROPERTIES LABELS "scripts" TIMEOUT 120)
  add_test(NAME ncu_stalls_summary COMMAND ${SPMLA_PYTHON3} ${PROJECT_SOURCE_DIR}/tools/ncu_stalls.py
           ${PROJECT_SOURCE_DIR}/tests/tools/ncu_source_sample.csv --top 2)
  # 1140 of 2000 samples on MUFU.EX2 (a "1,140" cell, a predicated instruction) = 57.00 %.
  set_tests_properties(ncu_stalls_summary PROPERTIES LABELS "scripts" TIMEOUT 60
    PASS_REGULAR_EXPRESSION "MUFU.EX2 +57.00 %.*SYNCS.PHASECHK.TRANS64.TRYWAIT +25.00 %.*top 2 instructions"
    FAIL_REGULAR_EXPRESSION "columns missing|no CSV header")
  # ncu 2025's layout: Address, Source, # Samples, then one column per stall reason.
  add_test(NAME ncu_stalls_summary_2025 COMMAND ${SPMLA_PYTHON3} ${PROJECT_SOURCE_DIR}/tools/ncu_stalls.py
           ${PROJECT_SOURCE_DIR}/tests/tools/ncu_source_sample_2025.csv --top 3)
  set_tests_properties(ncu_stalls_summary_2025 PROPERTIES LABELS "scripts" TIMEOUT 60
    PASS_REGULAR_EXPRESSION "stall_long_sb +54.00 %.*60.00 +0.00 +2,000 +0010 .*TRYWAIT.*long_sb 90%"
    FAIL_REGULAR_EXPRESSION "columns missing|no CSV header")
  add_test(NAME sass_check_sample COMMAND ${SPMLA_PYTHON3} ${PROJECT_SOURCE_DIR}/tools/sass_check.py
           ${PROJECT_SOURCE_DIR}/tests/tools/sass_sample.txt)
  set_tests_properties(sass_check_sample PROPERTIES LABELS "scripts" TIMEOUT 60
    PASS_REGULAR_EXPRESSION "^bad_kernel @b3a0: LDGSTS[^\n]*<- UR0, UR1, UR2 never written"
    FAIL_REGULAR_EXPRESSION "good_kernel")
  # --load-use: the FP4 scale byte read 4 instructions after its load is listed; a load read only
  # after a branch, and one overwritten before any read, are not.
  add_test(NAME sass_load_use_sample COMMAND ${SPMLA_PYTHON3} ${PROJECT_SOURCE_DIR}/tools/sass_check.py
           --load-use 8 --function load_use ${PROJECT_SOURCE_DIR}/tests/tools/sass_sample.txt)
  set_tests_properties(sass_load_use_sample PROPERTIES LABELS "scripts" TIMEOUT 60
    PASS_REGULAR_EXPRESSION "  1  load_use_kernel\n.*@3ef0 \\+4: LDG.E.U8.CONSTANT R6[^\n]*->  VIADD R208, R6, 0x100"
    FAIL_REGULAR_EXPRESSION "@3ee0|@3f10")
  add_test(NAME sim_fp4_prmt COMMAND ${SPMLA_PYTHON3} ${PROJECT_SOURCE_DIR}/tools/sim/fp4_prmt.py)
  set_tests_properties(sim_fp4_prmt PROPERTIES LABELS "scripts" TIMEOUT 60)
endif()

set(_spmla_hdr_dir ${CMAKE_CURRENT_BINARY_DIR}/header-checks)
file(MAKE_DIRECTORY ${_spmla_hdr_dir})
set(_spmla_init_uses [=[
static int spmla_header_check_uses_inits(void) {
  spmla_tensor_t t = SPMLA_TENSOR_INIT;
  spmla_kv_cache_t c = SPMLA_KV_CACHE_INIT;
  spmla_backend_info_t b = SPMLA_BACKEND_INFO_INIT;
  spmla_device_info_t d = SPMLA_DEVICE_INFO_INIT;
  spmla_sparse_attention_args_t a1 = SPMLA_SPARSE_ATTENTION_ARGS_INIT;
  spmla_indices_to_slots_args_t a2 = SPMLA_INDICES_TO_SLOTS_ARGS_INIT;
  spmla_window_indices_args_t a3 = SPMLA_WINDOW_INDICES_ARGS_INIT;
  spmla_indexer_logits_args_t a4 = SPMLA_INDEXER_LOGITS_ARGS_INIT;
  spmla_indexer_logits_paged_args_t a5 = SPMLA_INDEXER_LOGITS_PAGED_ARGS_INIT;
  spmla_topk_per_row_args_t a6 = SPMLA_TOPK_PER_ROW_ARGS_INIT;
  spmla_kv_cache_store_args_t a7 = SPMLA_KV_CACHE_STORE_ARGS_INIT;
  spmla_kv_cache_gather_args_t a8 = SPMLA_KV_CACHE_GATHER_ARGS_INIT;
  spmla_get_api_fn f = spmla_get_api;
  return (int)(t.struct_size + c.struct_size + b.struct_size + d.struct_size + a1.struct_size +
               a2.struct_size + a3.struct_size + a4.struct_size + a5.struct_size +
               a6.struct_size + a7.struct_size + a8.struct_size) + (f != 0);
}
int main(void) { return spmla_header_check_uses_inits() == 0; }
]=])

foreach(_hdr spmla spmla_backend)
  set(_body "#include \"${_hdr}.h\"\n")
  if(_hdr STREQUAL "spmla")
    string(APPEND _body "${_spmla_init_uses}")
  else()
    string(APPEND _body "static const spmla_backend_host_t *h;\nint main(void) { return h != 0; }\n")
  endif()
  file(WRITE ${_spmla_hdr_dir}/${_hdr}_alone.c "${_body}")
  file(WRITE ${_spmla_hdr_dir}/${_hdr}_alone.cpp "${_body}")
  add_test(NAME header_c99_${_hdr}
           COMMAND ${CMAKE_C_COMPILER} -std=c99 -Wall -Wextra -pedantic -Werror -fsyntax-only
                   -I${PROJECT_SOURCE_DIR}/include ${_spmla_hdr_dir}/${_hdr}_alone.c)
  add_test(NAME header_cxx17_${_hdr}
           COMMAND ${CMAKE_CXX_COMPILER} -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only
                   -I${PROJECT_SOURCE_DIR}/include ${_spmla_hdr_dir}/${_hdr}_alone.cpp)
  set_tests_properties(header_c99_${_hdr} header_cxx17_${_hdr} PROPERTIES LABELS "abi")
endforeach()

# spmla.h on Windows: SPMLA_API is dllexport while building libspmla (SPMLA_BUILDING_LIBRARY,
# defined by the `spmla` target) and dllimport for everyone else. Checked on the preprocessor
# output with _WIN32 defined (any compiler can preprocess it).
if(SPMLA_BASH)
  set(_inc ${PROJECT_SOURCE_DIR}/include)
  add_test(NAME header_win32_dllexport
           COMMAND ${SPMLA_BASH} -c "
exp=$(\"$0\" -E -P -D_WIN32 -DSPMLA_BUILDING_LIBRARY -I'${_inc}' '${_inc}/spmla.h') || exit 1
imp=$(\"$0\" -E -P -D_WIN32 -I'${_inc}' '${_inc}/spmla.h') || exit 1
grep -q '__declspec(dllexport) unsigned spmla_version_number' <<<\"$exp\" || { echo 'no dllexport when building the library'; exit 1; }
grep -q '__declspec(dllimport) unsigned spmla_version_number' <<<\"$imp\" || { echo 'no dllimport for consumers'; exit 1; }
if grep -q dllimport <<<\"$exp\"; then echo 'dllimport while building the library'; exit 1; fi
echo ok" ${CMAKE_C_COMPILER})
  set_tests_properties(header_win32_dllexport PROPERTIES LABELS "abi")
  # The library target really defines it.
  get_target_property(_spmla_defs spmla COMPILE_DEFINITIONS)
  if(NOT "SPMLA_BUILDING_LIBRARY" IN_LIST _spmla_defs)
    message(FATAL_ERROR "target spmla must define SPMLA_BUILDING_LIBRARY (spmla.h's SPMLA_API)")
  endif()
endif()
