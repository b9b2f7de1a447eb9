#!/usr/bin/env bash
# Benchmark: status callbacks per second through wa_notify.webhook_receive()
# (pgbench, single-status payloads and 50-status batches, against sent
# messages with wamids) and through wa_notify_relay (wrk, apt-get install wrk).
# Prints figures; not part of the test suite.
#
#   sudo test/bench/webhook_bench.sh            (as root: runs PostgreSQL as postgres)
#   PG_CONFIG=... DURATION=20 CLIENTS=4 SYNC_COMMIT=on test/bench/webhook_bench.sh
#
# It starts a throw-away cluster on 127.0.0.1-only sockets under /tmp, with
# the installed wa_notify (make install first), and removes it afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir)
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-4}
N=${N:-300000}                # messages (and single-status payloads)
NBATCH=${NBATCH:-4000}        # 50-status payloads
N_SINGLE_RUN=${N_SINGLE_RUN:-100000}  # first deliveries measured (<= N - 100000, the relay uses the last 100000)
SYNC_COMMIT=${SYNC_COMMIT:-on}
PORT=${PORT:-5491}
HTTP_PORT=${HTTP_PORT:-18091}
dir=$(mktemp -d /var/tmp/wa_bench_webhook.XXXXXX)
chown postgres: "$dir"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
    [ -n "${relay_pid:-}" ] && kill "$relay_pid" 2>/dev/null || true
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$dir'
shared_preload_libraries = 'wa_notify'
wa_notify.database = 'postgres'
shared_buffers = 256MB
synchronous_commit = $SYNC_COMMIT
max_wal_size = 4GB
checkpoint_timeout = 30min
CONF
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
export PGHOST=$dir PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
psql() { as_pg env PGHOST=$dir PGPORT=$PORT "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -U postgres postgres "$@"; }

echo "== setup: $N sent messages with wamids, payloads signed in SQL (pgcrypto)"
psql <<SQL
CREATE EXTENSION wa_notify;
CREATE EXTENSION pgcrypto;
UPDATE wa_notify.setting SET value = 'bench-app-secret' WHERE name = 'app_secret';
INSERT INTO wa_notify.message (event, order_key, phone, status, wamid, sent_at)
SELECT 'order_placed', i::text, '55119' || lpad(i::text, 8, '0'), 'sent', 'wamid.B' || i, now()
  FROM generate_series(1, $N) i;
CREATE FUNCTION st(i int, status text, ts bigint) RETURNS jsonb LANGUAGE sql AS \$\$
  SELECT jsonb_build_object('id', 'wamid.B' || i, 'status', status, 'timestamp', ts::text,
           'recipient_id', '55119' || lpad(i::text, 8, '0'), 'biz_opaque_callback_data', i::text,
           'conversation', jsonb_build_object('id', 'c' || i, 'origin', jsonb_build_object('type', 'utility')),
           'pricing', jsonb_build_object('billable', true, 'pricing_model', 'PMP', 'category', 'utility')) \$\$;
CREATE FUNCTION env(sts jsonb) RETURNS bytea LANGUAGE sql AS \$\$
  SELECT convert_to(jsonb_build_object('object', 'whatsapp_business_account', 'entry', jsonb_build_array(
    jsonb_build_object('id', '102290129340398', 'changes', jsonb_build_array(jsonb_build_object(
      'field', 'messages', 'value', jsonb_build_object('messaging_product', 'whatsapp',
        'metadata', jsonb_build_object('display_phone_number', '15550783881', 'phone_number_id', '106540352242922'),
        'statuses', sts))))))::text, 'UTF8') \$\$;
CREATE TABLE single (id int PRIMARY KEY, body bytea, sig text);
INSERT INTO single SELECT i, b, 'sha256=' || encode(hmac(b, 'bench-app-secret', 'sha256'), 'hex')
  FROM generate_series(1, $N) i, LATERAL env(jsonb_build_array(st(i, 'delivered', 1700000000 + i))) b;
CREATE TABLE batch (id int PRIMARY KEY, body bytea, sig text);
INSERT INTO batch SELECT k, b, 'sha256=' || encode(hmac(b, 'bench-app-secret', 'sha256'), 'hex')
  FROM generate_series(1, $NBATCH) k,
       LATERAL (SELECT env(jsonb_agg(st(i, 'read', 1700500000 + i))) FROM generate_series((k - 1) * 50 + 1, k * 50) i) x(b);
CREATE SEQUENCE s_single; CREATE SEQUENCE s_batch; CREATE SEQUENCE s_bare START 100001;
VACUUM ANALYZE;
SQL
echo "single payload bytes: $(psql -At -c 'SELECT length(body) FROM single WHERE id = 1'), batch payload bytes: $(psql -At -c 'SELECT length(body) FROM batch WHERE id = 1')"

cat > "$dir/single.sql" <<'S'
SELECT wa_notify.webhook_receive(body, sig) FROM single WHERE id = (SELECT nextval('s_single'));
S
cat > "$dir/single_dup.sql" <<'S'
\set i random(1, 10000)
SELECT wa_notify.webhook_receive(body, sig) FROM single WHERE id = :i;
S
cat > "$dir/batch.sql" <<'S'
SELECT wa_notify.webhook_receive(body, sig) FROM batch WHERE id = (SELECT nextval('s_batch'));
S
cat > "$dir/lookup.sql" <<'S'
SELECT length(body), sig FROM single WHERE id = (SELECT nextval('s_single'));
S
# the floor: one bare durable UPDATE per callback, no payload, no signature
cat > "$dir/bare.sql" <<'S'
UPDATE wa_notify.message SET status = 'delivered', delivered_at = now(), updated_at = now()
 WHERE wamid = 'wamid.B' || (SELECT nextval('s_bare'));
S
chown postgres: "$dir"/*.sql

# CPU used by the backends that exited (the postmaster's cutime + cstime, clock ticks):
# a figure that the other load on the machine disturbs far less than tps does
backend_ticks() { awk '{print $16 + $17}' "/proc/$(head -1 "$dir/data/postmaster.pid")/stat"; }
pgb() {
    local t0 t1 out n
    t0=$(backend_ticks)
    out=$(as_pg "$bindir/pgbench" -h "$dir" -p "$PORT" -U postgres -n -c "$CLIENTS" -j 2 "$@" postgres 2>&1)
    # the backends' times reach cutime when the postmaster has reaped them
    for _ in $(seq 200); do pgrep -P "$(head -1 "$dir/data/postmaster.pid")" -f '\[local\]' >/dev/null || break; sleep 0.01; done
    t1=$(backend_ticks)
    grep -E '^(number of transactions actually processed|latency average|tps|number of failed)' <<<"$out"
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    [ "${n:-0}" -gt 0 ] && awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "server CPU per transaction (backends, user+sys) = %.1f us\n", t / hz / n * 1e6 }'
    return 0
}
# each client runs a fixed share of the payloads, so that every callback is a first one
per_client_single=$(( N_SINGLE_RUN / CLIENTS ))
per_client_batch=$(( NBATCH / CLIENTS ))

echo "== pgbench, $CLIENTS clients, synchronous_commit=$SYNC_COMMIT"
echo "-- baseline: fetching the payload row only (the harness' own cost)"
pgb -T 5 -f "$dir/lookup.sql"
psql -c "SELECT setval('s_single', 1, false)" >/dev/null
echo "-- single-status 'delivered' callbacks, each a first delivery (sent -> delivered)"
pgb -t "$per_client_single" -f "$dir/single.sql"
psql -At -c "SELECT 'messages delivered: ' || count(*) FROM wa_notify.message WHERE status = 'delivered'"
echo "-- reference: a bare UPDATE sent -> delivered by wamid per transaction (the database's own floor)"
pgb -t "$(( 50000 / CLIENTS ))" -f "$dir/bare.sql"
echo "-- single-status callbacks repeated (duplicates: nothing changes), ${DURATION}s"
pgb -T "$DURATION" -f "$dir/single_dup.sql"
echo "-- 50-status batches ('read'); statuses/s = tps x 50"
pgb -t "$per_client_batch" -f "$dir/batch.sql"
psql -At -c "SELECT 'messages read: ' || count(*) FROM wa_notify.message WHERE status = 'read'"

if command -v wrk >/dev/null; then
    echo "== relay (pool_size 4): wrk -t2 -c8 -d${DURATION}s, single-status first 'read's"
    psql -c "CREATE ROLE wa_webhook LOGIN; GRANT USAGE ON SCHEMA wa_notify TO wa_webhook;
             GRANT EXECUTE ON FUNCTION wa_notify.webhook_receive(bytea, text), wa_notify.webhook_verify(text, text, text) TO wa_webhook;"
    # one request per line: signature TAB body (bodies are one-line JSON)
    psql -At -F $'\t' -c "SELECT 'sha256=' || encode(hmac(b, 'bench-app-secret', 'sha256'), 'hex'), convert_from(b, 'UTF8')
                            FROM generate_series($N - 100000 + 1, $N) i,
                                 LATERAL env(jsonb_build_array(st(i, 'read', 1700900000 + i))) b" > "$dir/reqs.tsv"
    env PGHOST=$dir PGPORT=$PORT PGDATABASE=postgres PGUSER=wa_webhook \
        "$bindir/wa_notify_relay" --listen "127.0.0.1:$HTTP_PORT" 2>"$dir/relay.log" &
    relay_pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.1; done
    WH_REQS="$dir/reqs.tsv" wrk -t2 -c8 -d"${DURATION}s" -s "$here/webhook_relay.lua" "http://127.0.0.1:$HTTP_PORT/webhook" \
        | grep -E 'Requests/sec|Latency|requests in|Non-2xx'
    psql -At -c "SELECT 'messages read after the relay run: ' || count(*) FROM wa_notify.message WHERE status = 'read'"
    echo "relay log lines: $(wc -l < "$dir/relay.log"), non-200: $(grep "status=" "$dir/relay.log" | grep -vc "status=200" || true)"
fi
