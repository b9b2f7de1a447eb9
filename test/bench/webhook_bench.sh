#!/usr/bin/env bash
# Benchmark: status callbacks per second (issue 11)
# 1. webhook_receive() (pgbench, single-status payloads) on a freshly filled,
#    never-analyzed message table, then after ANALYZE: first deliveries in
#    random order, and pure repeats, each as a ratio to a bare durable
#    "UPDATE ... WHERE wamid = ..." (random order too) with the same clients,
#    the three interleaved in rounds; targets: first >= 0.8, repeats >= 1.5;
# 2. 50-status batches;
# 3. signed single-status webhooks/s through wa_notify_relay (wrk), the
#    relay of 1.0 (built from git 9988c24) and this one, each alone and
#    while 1,000 idle connections are held open (hold_connections.py).
# Prints figures; not part of the test suite.
#
#   sudo test/bench/webhook_bench.sh            (as root: runs PostgreSQL as postgres)
#   PG_CONFIG=... DURATION=10 CLIENTS=4 SYNC_COMMIT=on test/bench/webhook_bench.sh
#   PARTS=1 ... (part 1 only: the webhook_receive() ratios)
#
# It starts a throw-away cluster on 127.0.0.1-only sockets under /var/tmp, with
# the installed wa_notify and wa_notify_relay (make install first), and removes
# it afterwards.  Needs wrk (Debian package wrk) for part 3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir)
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
NFIRST=${NFIRST:-20000}       # first deliveries measured per phase (and bare UPDATEs)
NREPEAT=${NREPEAT:-10000}     # distinct messages the repeats draw from
NRELAY=${NRELAY:-30000}       # signed payloads per relay run (4 runs)
NBATCH=${NBATCH:-1000}        # 50-status payloads
SYNC_COMMIT=${SYNC_COMMIT:-on}
PARTS=${PARTS:-1 2 3}         # which parts to run (e.g. PARTS=1)
PORT=${PORT:-5491}
HTTP_PORT=${HTTP_PORT:-18091}
OLD_RELAY_COMMIT=${OLD_RELAY_COMMIT:-9988c24}
# message ids: [before: first | bare] [after: first | bare] [relay x 4] [batch]
FB=1; BB=$((FB + NFIRST)); FA=$((BB + NFIRST)); BA=$((FA + NFIRST)); R0=$((BA + NFIRST))
K0=$((R0 + 4 * NRELAY)); N=$((K0 + NBATCH * 50 - 1))
dir=$(mktemp -d /var/tmp/wa_bench_webhook.XXXXXX)
chown postgres: "$dir"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
    [ -n "${relay_pid:-}" ] && kill "$relay_pid" 2>/dev/null || true
    [ -n "${hold_pid:-}" ] && kill "$hold_pid" 2>/dev/null || true
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
max_connections = 200
CONF
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
export PGHOST=$dir PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
psql() { as_pg env PGHOST=$dir PGPORT=$PORT "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -U postgres postgres "$@"; }

echo "== setup: $N sent messages with wamids (never analyzed: autovacuum off on the table), payloads signed in SQL (pgcrypto)"
psql <<SQL
CREATE EXTENSION wa_notify;
CREATE EXTENSION pgcrypto;
ALTER TABLE wa_notify.message SET (autovacuum_enabled = off);
UPDATE wa_notify.setting SET value = 'bench-app-secret' WHERE name = 'app_secret';
INSERT INTO wa_notify.message (event, order_key, phone, status, wamid, sent_at)
SELECT 'order_placed', i::text, '55119' || lpad(i::text, 8, '0'), 'sent', 'wamid.B' || i, now()
  FROM generate_series(1, $N) i;
CREATE FUNCTION st(i int, status text, ts bigint) RETURNS jsonb LANGUAGE sql AS \$\$
  SELECT jsonb_build_object('id', 'wamid.B' || i, 'status', status, 'timestamp', ts::text,
           'recipient_id', '55119' || lpad(i::text, 8, '0'),
           'conversation', jsonb_build_object('id', 'c' || i, 'origin', jsonb_build_object('type', 'utility')),
           'pricing', jsonb_build_object('billable', true, 'pricing_model', 'PMP', 'category', 'utility')) \$\$;
CREATE FUNCTION env(sts jsonb) RETURNS bytea LANGUAGE sql AS \$\$
  SELECT convert_to(jsonb_build_object('object', 'whatsapp_business_account', 'entry', jsonb_build_array(
    jsonb_build_object('id', '102290129340398', 'changes', jsonb_build_array(jsonb_build_object(
      'field', 'messages', 'value', jsonb_build_object('messaging_product', 'whatsapp',
        'metadata', jsonb_build_object('display_phone_number', '15550783881', 'phone_number_id', '106540352242922'),
        'statuses', sts))))))::text, 'UTF8') \$\$;
-- k: the order a phase runs them in (random), i: the message
CREATE TABLE single (k int PRIMARY KEY, i int, body bytea, sig text);
INSERT INTO single SELECT row_number() OVER (PARTITION BY i >= $FA ORDER BY random()) + (i >= $FA)::int * 1000000, i, b,
       'sha256=' || encode(hmac(b, 'bench-app-secret', 'sha256'), 'hex')
  FROM (SELECT i FROM generate_series($FB, $BB - 1) i UNION ALL SELECT i FROM generate_series($FA, $BA - 1) i) s,
       LATERAL env(jsonb_build_array(st(i, 'delivered', 1700000000 + i))) b;
CREATE TABLE bare (k int PRIMARY KEY, wamid text);
INSERT INTO bare SELECT row_number() OVER (PARTITION BY i >= $BA ORDER BY random()) + (i >= $BA)::int * 1000000, 'wamid.B' || i
  FROM (SELECT i FROM generate_series($BB, $FA - 1) i UNION ALL SELECT i FROM generate_series($BA, $R0 - 1) i) s;
CREATE TABLE batch (id int PRIMARY KEY, body bytea, sig text);
INSERT INTO batch SELECT k, b, 'sha256=' || encode(hmac(b, 'bench-app-secret', 'sha256'), 'hex')
  FROM generate_series(1, $NBATCH) k,
       LATERAL (SELECT env(jsonb_agg(st(i, 'read', 1700500000 + i)))
                  FROM generate_series($K0 + (k - 1) * 50, $K0 + k * 50 - 1) i) x(b);
CREATE SEQUENCE s_first; CREATE SEQUENCE s_bare; CREATE SEQUENCE s_batch;
VACUUM ANALYZE single, bare, batch;
SQL
# read every message once (hint bits, shared buffers) and checkpoint, so that
# no phase pays for the first touch of the fresh table; no VACUUM, no ANALYZE
psql -c "SELECT count(*) FROM wa_notify.message" -c "CHECKPOINT" >/dev/null
echo "message table statistics rows: $(psql -At -c "SELECT count(*) FROM pg_statistic WHERE starelid = 'wa_notify.message'::regclass")"

cat > "$dir/first.sql" <<'S'
SELECT wa_notify.webhook_receive(body, sig) FROM single WHERE k = (SELECT nextval('s_first'));
S
cat > "$dir/repeat.sql" <<'S'
\set k random(1, :nrepeat)
SELECT wa_notify.webhook_receive(body, sig) FROM single WHERE k = :k + :kbase;
S
# the floor: one bare durable UPDATE per callback, no payload, no signature
cat > "$dir/bare.sql" <<'S'
UPDATE wa_notify.message SET status = 'delivered', delivered_at = now(), updated_at = now()
 WHERE wamid = (SELECT wamid FROM bare WHERE k = (SELECT nextval('s_bare')));
S
cat > "$dir/batch.sql" <<'S'
SELECT wa_notify.webhook_receive(body, sig) FROM batch WHERE id = (SELECT nextval('s_batch'));
S
chown postgres: "$dir"/*.sql

# pgbench: prints its summary lines, leaves tps in $tps
pgb() {
    pgb_out=$(as_pg "$bindir/pgbench" -h "$dir" -p "$PORT" -U postgres -n -c "$CLIENTS" -j 2 "$@" postgres 2>&1)
    grep -E '^(number of transactions actually processed|latency average|tps|number of failed)' <<<"$pgb_out" | sed 's/^/   /'
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$pgb_out")
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# The machine's other load varies from minute to minute: each phase runs its
# three workloads interleaved, in ROUNDS rounds of NFIRST/ROUNDS transactions
# each, and rates are totals over the rounds (transactions / summed time).
ROUNDS=${ROUNDS:-4}
declare -A tx secs
run_chunk() {   # $1: workload name, then pgbench arguments
    local name=$1; shift
    pgb "$@" >/dev/null
    local n=$(( $(sed -n 's/^ *number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$pgb_out") ))
    tx[$name]=$(( ${tx[$name]:-0} + n ))
    secs[$name]=$(awk -v s="${secs[$name]:-0}" -v n="$n" -v t="$tps" 'BEGIN { printf "%.6f", s + n / t }')
}
rate() { awk -v n="${tx[$1]}" -v s="${secs[$1]}" 'BEGIN { printf "%.0f", n / s }'; }

phase() {   # $1: label, $2: k offset of this phase (0 or 1000000)
    local per=$((NFIRST / ROUNDS / CLIENTS)) r
    tx=() secs=()
    psql -c "SELECT setval('s_first', $2 + 1, false), setval('s_bare', $2 + 1, false)" >/dev/null
    for r in $(seq "$ROUNDS"); do
        run_chunk first -t "$per" -f "$dir/first.sql"
        run_chunk bare -t "$per" -f "$dir/bare.sql"
        # repeats of statuses this phase has delivered so far
        run_chunk repeat -t "$per" -D nrepeat="$((r * per * CLIENTS))" -D kbase="$2" -f "$dir/repeat.sql"
    done
    echo "   $1: ${tx[first]} first deliveries (random order), ${tx[bare]} bare UPDATEs (random order), ${tx[repeat]} repeats, in $ROUNDS interleaved rounds"
    echo "RESULT $1: first $(rate first)/s, repeats $(rate repeat)/s, bare UPDATE $(rate bare)/s;" \
         "first/bare = $(ratio "$(rate first)" "$(rate bare)") (target >= 0.8)," \
         "repeats/bare = $(ratio "$(rate repeat)" "$(rate bare)") (target >= 1.5)"
}

part() { [[ " $PARTS " == *" $1 "* ]]; }
if part 1; then
echo "== 1. webhook_receive(), pgbench, $CLIENTS clients, synchronous_commit=$SYNC_COMMIT"
phase "never analyzed" 0
psql -c "ANALYZE wa_notify.message"
phase "after ANALYZE" 1000000
psql -At -c "SELECT 'messages delivered: ' || count(*) FROM wa_notify.message WHERE status = 'delivered'"
fi
part 2 || { echo "== 2, 3: skipped (PARTS=$PARTS)"; exit 0; }

echo "== 2. 50-status batches ('read'); statuses/s = tps x 50"
pgb -t "$((NBATCH / CLIENTS))" -f "$dir/batch.sql"
echo "RESULT batches: $(awk -v t="$tps" 'BEGIN { printf "%.0f", t * 50 }') statuses/s"

command -v wrk >/dev/null || { echo "== 3. skipped: no wrk (apt-get install wrk)"; exit 0; }
echo "== 3. relay: wrk -t2 -c8 -d${DURATION}s, signed single-status first 'read's"
psql -c "CREATE ROLE wa_webhook LOGIN; GRANT USAGE ON SCHEMA wa_notify TO wa_webhook;
         GRANT EXECUTE ON FUNCTION wa_notify.webhook_receive(bytea, text), wa_notify.webhook_verify(text, text, text) TO wa_webhook;
         ALTER ROLE wa_webhook SET log_parameter_max_length = 0;"
for run in 0 1 2 3; do
    # one request per line: signature TAB body (bodies are one-line JSON)
    psql -At -F $'\t' -c "SELECT 'sha256=' || encode(hmac(b, 'bench-app-secret', 'sha256'), 'hex'), convert_from(b, 'UTF8')
                            FROM generate_series($R0 + $run * $NRELAY, $R0 + ($run + 1) * $NRELAY - 1) i,
                                 LATERAL env(jsonb_build_array(st(i, 'read', 1700900000 + i))) b" > "$dir/reqs$run.tsv"
done
old_src=$(git -C "$here" show "$OLD_RELAY_COMMIT:relay/wa_notify_relay.c")
gcc -std=gnu11 -O2 -x c -o "$dir/old_relay" - -I"$("$PG_CONFIG" --includedir)" -lmicrohttpd -lpq <<<"$old_src"
cat > "$dir/relay.conf" <<CONF
listen = 127.0.0.1:$HTTP_PORT
conninfo = host=127.0.0.1 port=$PORT dbname=postgres user=wa_webhook
pool_size = 4
CONF
chown postgres: "$dir"/*

relay_run() {   # $1: label, $2: binary, $3: payload file, $4: idle connections to hold
    local out
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null || break; sleep 0.1; done
    "$2" --config "$dir/relay.conf" 2>"$dir/relay.log" &   # not through runuser: $! is the relay
    relay_pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.1; done
    kill -0 "$relay_pid" || { echo "relay did not start: $(tail -3 "$dir/relay.log")"; return 1; }
    if [ "$4" -gt 0 ]; then
        python3 "$here/hold_connections.py" "$HTTP_PORT" "$4" 2>"$dir/hold.log" &
        hold_pid=$!
        for _ in $(seq 100); do grep -q holding "$dir/hold.log" && break; sleep 0.1; done
        echo "   $(head -1 "$dir/hold.log") idle connections"
    fi
    out=$(WH_REQS="$3" wrk -t2 -c8 -d"${DURATION}s" -s "$here/webhook_relay.lua" "http://127.0.0.1:$HTTP_PORT/webhook")
    grep -E 'Requests/sec|Latency|requests in|Non-2xx|Socket errors' <<<"$out" | sed 's/^/   /'
    echo "RESULT relay $1: $(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out") webhooks/s," \
         "non-2xx: $(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' <<<"$out" | grep . || echo 0)"
    if [ -n "${hold_pid:-}" ]; then kill "$hold_pid"; wait "$hold_pid" 2>/dev/null || true; hold_pid=; fi
    kill "$relay_pid" 2>/dev/null || echo "   relay had exited: $(tail -2 "$dir/relay.log" | tr '\n' ' ')"
    wait "$relay_pid" 2>/dev/null || true; relay_pid=
    echo "   relay log: $(grep -c 'status=200' "$dir/relay.log" || true) answered 200, other lines:" \
         "$(grep -v 'status=200' "$dir/relay.log" | sed 's/^[^ ]* wa_notify_relay: //' | cut -c1-100 | sort | uniq -c | sort -rn | head -3 | tr '\n' ';')"
}
relay_run "1.0 (select)" "$dir/old_relay" "$dir/reqs0.tsv" 0
relay_run "1.1 (epoll)" "$bindir/wa_notify_relay" "$dir/reqs1.tsv" 0
relay_run "1.0 (select), 1,000 idle connections held" "$dir/old_relay" "$dir/reqs2.tsv" 1000
relay_run "1.1 (epoll), 1,000 idle connections held" "$bindir/wa_notify_relay" "$dir/reqs3.tsv" 1000
psql -At -c "SELECT 'messages read after the relay runs: ' || count(*) FROM wa_notify.message WHERE status = 'read'"
