#!/usr/bin/env bash
# Runs every libFuzzer harness (or the ones named) for SECONDS each; fails on any crash,
# sanitizer report, broken invariant, timeout or out-of-memory.
# Usage: fuzz/run.sh SECONDS [family ...]     e.g. fuzz/run.sh 60, fuzz/run.sh 300 softmax
# Builds first (fuzz/build.sh). The run starts from the seeds in fuzz/corpus/<family>.b64
# (see fuzz/update-seeds.sh) in a temporary corpus (FUZZ_CORPUS=dir keeps it in dir/<family>).
# A crash is saved as fuzz/crashes/<family>-crash-<sha1> (FUZZ_ARTIFACTS overrides the
# directory) and printed in base64; reproduce with: fuzz/build/fuzz_<family> <crash file>.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:?usage: fuzz/run.sh SECONDS [family ...]}"
shift
case "$secs" in ''|*[!0-9]*) echo "fuzz/run.sh: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac
families=("$@")
[ "${#families[@]}" -gt 0 ] || families=(cross_entropy nll_loss softmax regression binary)
"$here/build.sh" "${families[@]}"

artifacts="${FUZZ_ARTIFACTS:-$here/crashes}"
mkdir -p "$artifacts"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"; rmdir "$artifacts" 2> /dev/null || true' EXIT  # kept only with a crash in it
failed=()
for f in "${families[@]}"; do
    corpus="${FUZZ_CORPUS:+$FUZZ_CORPUS/$f}"
    corpus="${corpus:-$tmp/corpus-$f}"
    mkdir -p "$corpus"
    if [ -f "$here/corpus/$f.b64" ]; then # the seeds: one base64 input per line
        n=0
        while IFS= read -r line; do
            n=$((n + 1))
            printf '%s' "$line" | base64 -d > "$corpus/seed-$n"
        done < "$here/corpus/$f.b64"
    fi
    echo "== fuzz_$f for ${secs} s"
    log="$tmp/$f.log"
    set +e
    "$here/build/fuzz_$f" -max_total_time="$secs" -max_len=4096 -timeout=30 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$f-" "$corpus" > "$log" 2>&1
    rc=$?
    set -e
    grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        failed+=("$f")
        echo "fuzz_$f FAILED (exit $rc); the end of its log:"
        tail -n 60 "$log"
        for crash in $(grep -o "Test unit written to .*" "$log" | sed 's/Test unit written to //'); do
            echo "reproducer $crash (base64):"
            base64 -w 0 "$crash"
            echo
        done
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#families[@]} harnesses, ${secs} s each, no finding"
