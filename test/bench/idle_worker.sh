#!/usr/bin/env bash
# Idle-worker figures: commits (pg_stat_database.xact_commit, all databases)
# and CPU ticks of the worker processes (utime+stime, /proc/PID/stat) over
# 10 idle seconds, in three states: extension missing, configured and idle,
# and idle again after a burst of 1,000 messages sent through the mock.
#
#   bash test/bench/idle_worker.sh        (as root or postgres; needs the
#                                          extension installed: make install)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" = 0 ]; then
    d=$(mktemp -d /var/tmp/wa_idle.XXXXXX); chown postgres: "$d"
    exec runuser -u postgres -- env WA_IDLE_DIR="$d" bash "$0" "$@"
fi
bin=$(${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --bindir)
d=${WA_IDLE_DIR:-$(mktemp -d /var/tmp/wa_idle.XXXXXX)}
port=$((20000 + RANDOM % 20000))
export PGHOST=$d PGPORT=$port
"$bin/initdb" -A trust -D "$d/data" >/dev/null
cat >> "$d/data/postgresql.conf" <<CONF
shared_preload_libraries = 'wa_notify'
wa_notify.database = 'shop'
listen_addresses = ''
unix_socket_directories = '$d'
CONF
/usr/bin/python3 "$here/test/mock/graph_mock.py" --log "$d/req.jsonl" --port-file "$d/mport" >/dev/null 2>&1 &
mock=$!
trap '"$bin/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1 || true; kill $mock 2>/dev/null || true; rm -rf "$d"' EXIT
"$bin/pg_ctl" -D "$d/data" -l "$d/log" -w start >/dev/null
"$bin/createdb" shop
while [ ! -s "$d/mport" ]; do sleep 0.1; done
mport=$(cat "$d/mport")
tck=$(getconf CLK_TCK)

ticks() {   # utime+stime of every wa_notify background process
    local t=0
    for p in $("$bin/psql" -Atd postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'wa_notify%'"); do
        t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat)))
    done
    echo $t
}
commits() { "$bin/psql" -Atd postgres -c "SELECT sum(xact_commit) FROM pg_stat_database"; }
measure() {  # label
    sleep 2   # settle
    local c0 t0 c1 t1
    "$bin/psql" -Atd postgres -c "SELECT pg_stat_clear_snapshot()" >/dev/null
    c0=$(commits); t0=$(ticks)
    sleep 10
    c1=$(commits); t1=$(ticks)
    # the two psql calls of the second reading count as 2 commits
    printf '%-34s commits %5d   cpu %5.1f%% of one core\n' "$1" $((c1 - c0 - 2)) \
        "$(awk -v d=$((t1 - t0)) -v hz="$tck" 'BEGIN { printf "%.1f", d * 100 / hz / 10 }')"
}

measure "no extension in the database"
"$bin/psql" -qd shop -c "CREATE EXTENSION wa_notify" >/dev/null
measure "extension, not configured"
"$bin/psql" -qd shop >/dev/null <<SQL
SELECT wa_notify.configure(access_token => 'EAAbench-token-0123456789', phone_number_id => '106540352242922',
       business_account_id => '102290129340398', api_base_url => 'http://127.0.0.1:$mport',
       min_delay => 0, max_delay => 0, max_per_batch => 100000, max_rate => 0,
       recipient_gap => 0, polling_interval => 60);
SQL
measure "configured, idle"
"$bin/psql" -qd shop -c "INSERT INTO wa_notify.message (event, order_key, phone, params)
    SELECT 'order_placed', 'b' || g, '55119' || lpad(g::text, 8, '0'), '{\"customer_name\":\"A\",\"order_number\":\"1\",\"total\":\"1\"}'
      FROM generate_series(1, 1000) g" >/dev/null
for i in $(seq 1 600); do
    left=$("$bin/psql" -Atd shop -c "SELECT count(*) FROM wa_notify.message WHERE status IN ('queued','sending')")
    [ "$left" = 0 ] && break; sleep 0.5
done
echo "burst: $("$bin/psql" -Atd shop -c "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM wa_notify.message GROUP BY 1) s")"
measure "idle after a burst of 1,000"
