#!/usr/bin/env bash
# Makes sure clang with libFuzzer's runtime is there (for fuzz/build.sh): does nothing when
# clang already links a -fsanitize=fuzzer program, else installs Debian's clang and the
# compiler-rt package of that clang's major version with apt-get (needs root).
set -euo pipefail
cc="${CC_FUZZ:-clang}"
probe() {
    local tmp
    tmp="$(mktemp -d)"
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$tmp/p.c"
    local ok=0
    "$cc" -fsanitize=fuzzer,address,undefined "$tmp/p.c" -o "$tmp/p" > /dev/null 2>&1 || ok=1
    rm -rf "$tmp"
    return $ok
}
if command -v "$cc" > /dev/null 2>&1 && probe; then
    echo "fuzz toolchain: $("$cc" --version | head -n 1)"
    exit 0
fi
command -v apt-get > /dev/null || { echo "fuzz/setup-toolchain.sh: no $cc with libFuzzer and no apt-get" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt_get() { # apt-get with one retry (a mirror hiccup should not fail CI)
    apt-get "$@" || { sleep 10; apt-get "$@"; }
}
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "fuzz toolchain: installing clang with apt-get"
{
    apt_get update -q
    apt_get install -y -q --no-install-recommends clang
} > "$log" 2>&1 || { cat "$log"; exit 1; }
major="$(clang --version | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1)"
[ -n "$major" ] || { echo "fuzz/setup-toolchain.sh: cannot read clang's version" >&2; exit 1; }
apt_get install -y -q --no-install-recommends "libclang-rt-$major-dev" > "$log" 2>&1 \
    || apt_get install -y -q --no-install-recommends "libclang-rt-dev" > "$log" 2>&1 \
    || { cat "$log"; exit 1; }
probe || { echo "fuzz/setup-toolchain.sh: clang still cannot link -fsanitize=fuzzer" >&2; exit 1; }
echo "fuzz toolchain: $(clang --version | head -n 1)"
