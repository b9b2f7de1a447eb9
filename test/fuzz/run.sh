#!/usr/bin/env bash
# Build and run the libFuzzer target of the webhook payload parser for a
# bounded time (default 25 s):  test/fuzz/run.sh [seconds]
# Needs clang (clang-14 here) with libFuzzer, and libjson-c-dev.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-25}
CLANG=${CLANG:-$(command -v clang-14 || command -v clang)}
out="$here/fuzz_webhook"
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/src" "$here/fuzz_webhook_parse.c" "$root/src/webhook_parse.c" -ljson-c -o "$out"
work=$(mktemp -d /tmp/wa_notify_fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
# the seed corpus stays read-only; new inputs go to the scratch directory
"$out" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -dict="$here/json.dict" -print_final_stats=1 "$work" "$here/corpus" 2>&1 | tail -25
