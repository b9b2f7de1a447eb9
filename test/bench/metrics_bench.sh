#!/usr/bin/env bash
# Metrics benchmark: what a Prometheus scrape of wa_notify costs, with a
# long history and without.
#
#   test/bench/metrics_bench.sh            (as root or postgres; builds nothing:
#                                           run "make install" first)
#   PG_CONFIG=... HISTORY=2000000 TODAY=20000 QUEUED=1000 REPS=7 test/bench/metrics_bench.sh
#
# A throw-away cluster; two databases with the extension: "empty" (only
# today's messages and the queue) and "history" (the same plus HISTORY
# messages spread over the 13 months before today, sent/delivered/read/
# failed), both analyzed.  For each metrics view of 60_metrics.sql (one
# query of contrib/prometheus/wa_notify_queries.yaml each) it prints the
# median time of REPS runs in both databases and their ratio.  The worker
# serves neither database (wa_notify.database = postgres).
# Network: none (Unix socket only).
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
HISTORY=${HISTORY:-2000000}
TODAY=${TODAY:-20000}
QUEUED=${QUEUED:-1000}
REPS=${REPS:-7}
if [ "$(id -u)" = 0 ]; then
    exec runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" HISTORY="$HISTORY" TODAY="$TODAY" \
        QUEUED="$QUEUED" REPS="$REPS" bash "$0" "$@"
fi
BIN=$("$PG_CONFIG" --bindir)
DIR=$(mktemp -d /tmp/wa_metrics_bench.XXXXXX)
PORT=${PORT:-55439}
export PGHOST=$DIR PGPORT=$PORT PGOPTIONS="-c client_min_messages=warning"
trap '"$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT

"$BIN/initdb" -D "$DIR/data" -A trust >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $PORT
shared_preload_libraries = 'wa_notify'
wa_notify.database = 'postgres'
fsync = off
synchronous_commit = off
CONF
"$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
psql() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

load() {
    local db=$1 history=$2
    psql -d postgres -c "CREATE DATABASE $db"
    psql -d "$db" <<SQL
CREATE EXTENSION wa_notify;
-- history: HISTORY messages over the 13 months before today
INSERT INTO wa_notify.message (event, order_key, phone, status, wamid, created_at, claimed_at,
                               sent_at, delivered_at, read_at, failed_at, error_class)
SELECT 'order_placed', 'H' || g, '55119' || lpad((g % 100000000)::text, 8, '0'), s.status,
       CASE WHEN s.status <> 'failed' THEN 'wamid.H' || g END, t, t,
       CASE WHEN s.status <> 'failed' THEN t + interval '1 s' END,
       CASE WHEN s.status IN ('delivered', 'read') THEN t + interval '5 s' END,
       CASE WHEN s.status = 'read' THEN t + interval '60 s' END,
       CASE WHEN s.status = 'failed' THEN t + interval '1 s' END,
       CASE WHEN s.status = 'failed' THEN 'recipient' END
  FROM generate_series(1, $history) g,
       LATERAL (SELECT date_trunc('day', now()) - interval '1 hour'
                       - (g::float8 / greatest($history, 1)) * interval '395 days' AS t) x,
       LATERAL (SELECT (ARRAY['sent', 'delivered', 'read', 'read', 'failed'])[1 + g % 5] AS status) s;
-- today: TODAY messages, the same mix
INSERT INTO wa_notify.message (event, order_key, phone, status, wamid, created_at, claimed_at,
                               sent_at, delivered_at, read_at, failed_at, error_class)
SELECT 'order_placed', 'T' || g, '55118' || lpad(g::text, 8, '0'), s.status,
       CASE WHEN s.status <> 'failed' THEN 'wamid.T' || g END, t, t,
       CASE WHEN s.status <> 'failed' THEN t END,
       CASE WHEN s.status IN ('delivered', 'read') THEN t END,
       CASE WHEN s.status = 'read' THEN t END,
       CASE WHEN s.status = 'failed' THEN t END,
       CASE WHEN s.status = 'failed' THEN 'recipient' END
  FROM generate_series(1, $TODAY) g,
       LATERAL (SELECT now() - (g::float8 / $TODAY) * (now() - date_trunc('day', now())) AS t) x,
       LATERAL (SELECT (ARRAY['sent', 'delivered', 'read', 'read', 'failed'])[1 + g % 5] AS status) s;
-- the queue
INSERT INTO wa_notify.message (event, order_key, phone)
SELECT 'order_placed', 'Q' || g, '55117' || lpad(g::text, 8, '0') FROM generate_series(1, $QUEUED) g;
VACUUM ANALYZE wa_notify.message;
CREATE FUNCTION public.median_ms(q text, reps integer) RETURNS numeric LANGUAGE plpgsql AS \$\$
DECLARE t timestamptz; ms numeric[] := '{}';
BEGIN
    EXECUTE q;   -- warm
    FOR i IN 1 .. reps LOOP
        t := clock_timestamp();
        EXECUTE q;
        ms := ms || extract(epoch FROM clock_timestamp() - t) * 1000;
    END LOOP;
    RETURN (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY x)::numeric, 2) FROM unnest(ms) x);
END \$\$;
SQL
}

echo "loading: empty (today $TODAY, queued $QUEUED) and history (+ $HISTORY over 13 months)" >&2
load empty 0
load history "$HISTORY"

printf '%-18s %10s %12s %7s\n' view "empty ms" "history ms" ratio
for v in metrics_queue metrics_messages metrics_failures metrics_sender metrics_worker; do
    q="SELECT count(*) FROM (SELECT * FROM wa_notify.$v) v"
    e=$(psql -At -d empty -c "SELECT public.median_ms('$q', $REPS)")
    h=$(psql -At -d history -c "SELECT public.median_ms('$q', $REPS)")
    printf '%-18s %10s %12s %7s\n' "$v" "$e" "$h" "$(awk -v e="$e" -v h="$h" 'BEGIN { printf "%.2f", (e > 0 ? h / e : 0) }')"
done
psql -At -d history -c "SELECT pg_size_pretty(pg_total_relation_size('wa_notify.message'))" | sed 's/^/history table with indexes: /'
