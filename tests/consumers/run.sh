#!/usr/bin/env bash
# Consumer tests against an INSTALLED spmla tree.
#
#   tests/consumers/run.sh [BUILD_DIR]
#
# BUILD_DIR (default: build) is a configured spmla build tree (configured here, without
# the Catch2 tests, if it is not); it is built (everything `cmake --install` installs: the
# library, the CLI, plugins) and installed with `cmake --install BUILD_DIR --prefix <tmp>`.
# Against that prefix:
#   (a) tests/consumers/cmake: find_package(spmla) + spmla::spmla, builds and runs
#       consumer_c, test_spmla_hpp (include/spmla.hpp) and two_threads (two handles
#       created and used on two threads at once);
#   (b) tests/consumers/make: a Makefile project using `pkg-config spmla`, run from a
#       relocated copy of the prefix too (the .pc file is relocatable);
#   (c) tests/consumers/engine: a C engine NOT linked against spmla (checked with
#       readelf): dlopen + spmla_get_api + a DeepSeek-V3.2 decode step checked against
#       its own reference, by path and by SONAME through LD_LIBRARY_PATH.
# Exits non-zero on the first failure. Set KEEP=1 to keep the temporary directory.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-build}
[[ $build = /* ]] || build="$root/$build"
jobs=${JOBS:-2}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/spmla-consumers.XXXXXX")
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$tmp"' EXIT; else echo "keeping $tmp"; fi

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "consumers: FAILED: $*" >&2; exit 1; }

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  step "configure $build"
  cmake -S "$root" -B "$build" -G Ninja -DSPMLA_BUILD_TESTS=OFF >/dev/null
fi
step "build $build"
cmake --build "$build" -j"$jobs"
step "install into $tmp/prefix"
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
prefix="$tmp/prefix"
lib=$(find "$prefix" -name 'libspmla.so.1' -print -quit)
[[ -n "$lib" ]] || fail "no libspmla.so.1 under $prefix"
libdir=$(dirname "$lib")
pcdir="$libdir/pkgconfig"
[[ -f "$pcdir/spmla.pc" ]] || fail "no spmla.pc in $pcdir"
for h in spmla.h spmla_backend.h spmla.hpp; do
  [[ -f "$prefix/include/$h" ]] || fail "$h is not installed in $prefix/include"
done
echo "libspmla: $lib"

# The tests must use the installed tree only: no library path from the environment.
unset LD_LIBRARY_PATH SPMLA_BACKEND_PATH

step "(a) CMake find_package(spmla) project"
cmake -S "$root/tests/consumers/cmake" -B "$tmp/cmake-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null \
  || fail "configuring the find_package consumer"
cmake --build "$tmp/cmake-build" -j"$jobs" || fail "building the find_package consumer"
(cd "$tmp/cmake-build" && ctest --output-on-failure) || fail "find_package consumer tests"
# It linked the installed library, not a build tree's.
# (grep reads a here-string, not a pipe: under pipefail `ldd ... | grep -q` fails at random when grep
# exits on its match before ldd has written everything, and ldd dies of SIGPIPE)
deps=$(ldd "$tmp/cmake-build/consumer_c")
grep -q "$libdir/libspmla.so.1" <<<"$deps" \
  || fail "consumer_c does not resolve libspmla from the install prefix: $(grep spmla <<<"$deps")"

step "(b) Makefile project with pkg-config"
mkdir -p "$tmp/make-out"
PKG_CONFIG_PATH="$pcdir" make -s -C "$root/tests/consumers/make" OUT="$tmp/make-out" check \
  || fail "pkg-config consumer"
# Relocate the prefix: the .pc file derives its prefix from its own location.
cp -a "$prefix" "$tmp/moved"
mkdir -p "$tmp/make-out2"
moved_pcdir="$tmp/moved/${pcdir#"$prefix"/}"
[[ "$(PKG_CONFIG_PATH="$moved_pcdir" pkg-config --variable=libdir spmla)" -ef "$tmp/moved/${libdir#"$prefix"/}" ]] \
  || fail "spmla.pc is not relocatable: libdir $(PKG_CONFIG_PATH="$moved_pcdir" pkg-config --variable=libdir spmla)"
PKG_CONFIG_PATH="$moved_pcdir" make -s -C "$root/tests/consumers/make" OUT="$tmp/make-out2" check \
  || fail "pkg-config consumer from a relocated prefix"

step "(c) engine: dlopen, not linked against spmla"
cc -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -I"$prefix/include" \
  "$root/tests/consumers/engine/engine.c" -o "$tmp/engine" -ldl -lm
if grep -q 'NEEDED.*libspmla' <<<"$(readelf -d "$tmp/engine")"; then
  fail "the engine links libspmla; it must only dlopen it"
fi
"$tmp/engine" "$lib" || fail "engine (dlopen by path)"
LD_LIBRARY_PATH="$libdir" "$tmp/engine" || fail "engine (dlopen libspmla.so.1 by SONAME)"

printf '\nconsumers: all passed (find_package, pkg-config, dlopen engine, two threads, spmla.hpp)\n'
