#!/usr/bin/env bash
# Rewrites the seed corpora fuzz/corpus/<family>.b64 (one base64 input per line) from the
# corpora of a longer run: FUZZ_CORPUS=/tmp/corpus fuzz/run.sh 600, then
# fuzz/update-seeds.sh /tmp/corpus. libFuzzer's -merge=1 keeps the smallest set of inputs
# that covers every feature of the existing seeds and the new corpus.
# Usage: fuzz/update-seeds.sh CORPUS_ROOT [family ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="${1:?usage: fuzz/update-seeds.sh CORPUS_ROOT [family ...]}"
shift
families=("$@")
[ "${#families[@]}" -gt 0 ] || families=(cross_entropy nll_loss softmax regression binary)
"$here/build.sh" "${families[@]}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$here/corpus"
for f in "${families[@]}"; do
    mkdir -p "$tmp/old-$f" "$tmp/new-$f"
    if [ -f "$here/corpus/$f.b64" ]; then
        n=0
        while IFS= read -r line; do
            n=$((n + 1))
            printf '%s' "$line" | base64 -d > "$tmp/old-$f/seed-$n"
        done < "$here/corpus/$f.b64"
    fi
    "$here/build/fuzz_$f" -merge=1 -max_len=4096 -timeout=30 "$tmp/new-$f" "$tmp/old-$f" "$src/$f" \
        > "$tmp/merge-$f.log" 2>&1 || { tail -n 30 "$tmp/merge-$f.log"; exit 1; }
    for s in "$tmp/new-$f"/*; do
        [ -f "$s" ] && base64 -w 0 "$s" && echo
    done | LC_ALL=C sort > "$here/corpus/$f.b64"
    echo "fuzz/corpus/$f.b64: $(wc -l < "$here/corpus/$f.b64") inputs"
done
