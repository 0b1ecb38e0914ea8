#!/usr/bin/env bash
# Builds the libFuzzer harnesses: one binary per kernel family, fuzz/build/fuzz_<family>,
# compiled from fuzz/fuzz_<family>.c with csrc/<family>.c and csrc/dispatch.c by clang with
# -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all. Without -fopenmp: the
# kernels run their serial loop (nthreads = 1), which is the code every thread runs.
# Usage: fuzz/build.sh [family ...]   (default: all).  CC_FUZZ overrides the compiler.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cc="${CC_FUZZ:-clang}"
out="$here/build"
families=("$@")
[ "${#families[@]}" -gt 0 ] || families=(cross_entropy nll_loss softmax regression binary)
command -v "$cc" > /dev/null || { echo "fuzz/build.sh: $cc not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
mkdir -p "$out"
flags=(-std=c99 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I"$root/csrc" -I"$here" -Wall -Wno-unknown-pragmas
       -Wno-unused-function -Wno-psabi)
for f in "${families[@]}"; do
    [ -f "$here/fuzz_$f.c" ] || { echo "fuzz/build.sh: no harness fuzz/fuzz_$f.c" >&2; exit 1; }
    echo "build fuzz/build/fuzz_$f"
    "$cc" "${flags[@]}" "$here/fuzz_$f.c" "$root/csrc/$f.c" "$root/csrc/dispatch.c" -lm -o "$out/fuzz_$f"
done
