#!/usr/bin/env bash
# A/B of capture's cost across builds, in one session: capture_bench.sh
# run for each build in turn, ROUNDS times (interleaved, so that a change
# of load on a shared machine shifts every build alike), then each build's
# median ratio to the plain table of its own run, per column.
#
#   NAMES="main new v1.0" PG_CONFIGS="/a/pg_config /b/pg_config /c/pg_config" \
#     ROUNDS=3 ROWS=50000 test/bench/capture_ab.sh
#
# Each PG_CONFIG is an installation with its own build of wa_notify
# installed (make PG_CONFIG=... install).  One capture_bench.sh run per
# build and round (REPS=1, VARIANTS="plain wa_notify", RESOLVE=0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
read -r -a names <<< "${NAMES:?NAMES: one name per build}"
read -r -a configs <<< "${PG_CONFIGS:?PG_CONFIGS: one pg_config per build}"
[ "${#names[@]}" = "${#configs[@]}" ] || { echo "NAMES and PG_CONFIGS differ in length" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
ROWS=${ROWS:-50000}
out=$(mktemp -d /tmp/wa_capture_ab.XXXXXX)
chmod 755 "$out"
cols="checkout bulk ship updno updfire"

for r in $(seq "$ROUNDS"); do
    for i in "${!names[@]}"; do
        PG_CONFIG=${configs[$i]} ROWS=$ROWS REPS=1 VARIANTS="plain wa_notify" RESOLVE=0 \
            bash "$here/capture_bench.sh" > "$out/${names[$i]}.$r" 2>/dev/null
        # the ratio columns of the wa_notify line: checkout bulk ship updno updfire
        grep '^wa_notify ' "$out/${names[$i]}.$r" | grep -o '[0-9.]*x' | tr -d x | tr '\n' ' ' \
            >> "$out/${names[$i]}.ratios"
        echo >> "$out/${names[$i]}.ratios"
        echo "round $r ${names[$i]}: $(tail -1 "$out/${names[$i]}.ratios")(load $(cut -d' ' -f1 /proc/loadavg))" >&2
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\ncapture cost A/B: %s rows, %s rounds interleaved; ratio to the plain table of the same run (median; lower is better)\n\n' "$ROWS" "$ROUNDS"
printf '%-10s | %-9s | %-9s | %-9s | %-9s | %-9s\n' build checkout bulk ship upd-no upd-fire
for n in "${names[@]}"; do
    line=$(printf '%-10s' "$n")
    for c in 1 2 3 4 5; do
        line+=$(printf ' | %8.2fx' "$(cut -d' ' -f$c "$out/$n.ratios" | median)")
    done
    echo "$line"
done
printf '\n(each run: %s/<build>.<round>)\n' "$out"
