#!/usr/bin/env bash
# wa_notify demo: the whole chain on a throw-away cluster, on loopback only.
#
#   shop INSERT -> capture -> worker -> mock Graph API (127.0.0.1)
#   mock "Meta" -> signed delivery webhook -> wa_notify_relay -> webhook_receive()
#
# 1.1 shows too: 1.0 installed and updated in place (ALTER EXTENSION
# UPDATE), the secrets in a server-side file (none in SQL text), contexts
# run as wa_notify_context, two stores' numbers (senders) routed by the
# order's StoreId, the launcher serving every database with the extension
# (no database named), the idle worker at rest (its commits counted), the
# relay's /healthz, pricing from the status webhook and costs(),
# maintain() (retention, anonymization, the archive), the message tally the
# reports read, and the metrics
# Prometheus reads.
#
# Run as root from the source tree: bash scripts/demo.sh
# It installs what it needs (Debian packages, the extension), runs
# PostgreSQL as the postgres user under /tmp/wa_notify_demo, and stops
# everything it started when it ends (WA_DEMO_KEEP=1 leaves it running).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" = 0 ] || { echo "run as root: bash scripts/demo.sh" >&2; exit 1; }

bash scripts/install-deps.sh
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
PGBIN=$("$PG_CONFIG" --bindir)

DEMO=/tmp/wa_notify_demo
PGPORT_DEMO=54329
RELAY_PORT=18080
as_pg() { runuser -u postgres -- "$@"; }
# start a background process as postgres; its own pid (not runuser's) goes to $1
as_pg_bg() { local pidfile=$1; shift; runuser -u postgres -- bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" & }

# an earlier run that was kept, or interrupted: stop it, start afresh
if [ -d "$DEMO" ]; then
    for f in relay.pid mock.pid; do
        [ -f "$DEMO/$f" ] && kill "$(cat "$DEMO/$f")" 2>/dev/null || true
    done
    [ -f "$DEMO/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$DEMO"
fi
install -d -o postgres -g postgres "$DEMO"

cleanup() {
    if [ -n "${WA_DEMO_KEEP:-}" ]; then
        echo "left running in $DEMO (psql -h $DEMO -p $PGPORT_DEMO shop)"
        return
    fi
    for f in relay.pid mock.pid; do
        [ -f "$DEMO/$f" ] && kill "$(cat "$DEMO/$f")" 2>/dev/null || true
    done
    as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
psql_shop() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DEMO" -p "$PGPORT_DEMO" -d shop "$@"; }
# poll a query until it returns 't' (deadline in seconds)
wait_for() {
    local sql=$1 deadline=$((SECONDS + ${2:-30}))
    until [ "$(psql_shop -At -c "$sql")" = t ]; do
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $sql" >&2; exit 1; }
        sleep 0.1
    done
}

step "1. a throw-away PostgreSQL with wa_notify preloaded"
as_pg "$PGBIN/initdb" -D "$DEMO/data" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >> "$DEMO/data/postgresql.conf" <<CONF
port = $PGPORT_DEMO
listen_addresses = ''
unix_socket_directories = '$DEMO'
CONF
as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -l "$DEMO/postgres.log" -w start >/dev/null
as_pg "$PGBIN/createdb" -h "$DEMO" -p "$PGPORT_DEMO" shop
# production keeps the secrets in a file the server reads (doc/install.md)
APP_SECRET=$(openssl rand -hex 16)
VERIFY_TOKEN=$(openssl rand -hex 24)
install -o postgres -g postgres -m 0600 /dev/null "$DEMO/wa_notify.secrets"
cat > "$DEMO/wa_notify.secrets" <<SECRETS
# wa_notify secrets: one "name = value" a line
access_token = DEMO-access-token-not-a-real-one
app_secret = $APP_SECRET
webhook_verify_token = $VERIFY_TOKEN
store_2.access_token = DEMO-store-2-token-not-a-real-one
SECRETS
cat >> "$DEMO/data/postgresql.conf" <<CONF
shared_preload_libraries = 'wa_notify'
# no wa_notify.database: the launcher serves every database with the extension
wa_notify.secrets_file = '$DEMO/wa_notify.secrets'
CONF
as_pg "$PGBIN/pg_ctl" -D "$DEMO/data" -l "$DEMO/postgres.log" -w restart >/dev/null
echo "cluster in $DEMO/data, log $DEMO/postgres.log"

step "2. the mock Graph API on 127.0.0.1"
as_pg_bg "$DEMO/mock.pid" /usr/bin/python3 test/mock/graph_mock.py --log "$DEMO/requests.jsonl" \
    --port-file "$DEMO/mock.port" >"$DEMO/mock.log" 2>&1
for _ in $(seq 100); do [ -s "$DEMO/mock.port" ] && break; sleep 0.1; done
MOCK_PORT=$(cat "$DEMO/mock.port")
echo "mock Graph API at http://127.0.0.1:$MOCK_PORT"

step "3. wa_notify 1.0 as users have it, updated in place to 1.1"
psql_shop -c "CREATE EXTENSION wa_notify VERSION '1.0'" \
          -c "SELECT extversion AS installed FROM pg_extension WHERE extname = 'wa_notify'"
psql_shop -c "ALTER EXTENSION wa_notify UPDATE" \
          -c "SELECT extversion AS updated FROM pg_extension WHERE extname = 'wa_notify'"

step "4. a nopCommerce-shaped shop, roles, settings (no secret in SQL) and a watch"
psql_shop <<SQL
CREATE TABLE "Address" ("Id" serial PRIMARY KEY, "FirstName" text, "PhoneNumber" text);
CREATE TABLE "Order" ("Id" serial PRIMARY KEY, "StoreId" int NOT NULL DEFAULT 1,
                      "CustomOrderNumber" text, "BillingAddressId" int REFERENCES "Address",
                      "OrderStatusId" int NOT NULL DEFAULT 10, "OrderTotal" numeric(18,4) NOT NULL,
                      "CreatedOnUtc" timestamp NOT NULL DEFAULT now());
-- the shop application's own login: rights on its tables only
CREATE ROLE shop_app LOGIN;
GRANT SELECT, INSERT, UPDATE ON "Address", "Order" TO shop_app;
-- which WhatsApp number (sender) speaks for which store (doc/senders.md)
CREATE TABLE store_sender ("StoreId" int PRIMARY KEY, sender text NOT NULL);
INSERT INTO store_sender VALUES (2, 'store_2');
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO shop_app;

-- contexts run as wa_notify_context: it reads what it is granted, nothing of wa_notify
DO \$\$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wa_notify_context') THEN
        GRANT SELECT ON "Address", "Order", store_sender TO wa_notify_context;
    END IF;
END \$\$;
-- the relay's least-privileged login (doc/roles.md)
CREATE ROLE wa_webhook LOGIN;
GRANT USAGE ON SCHEMA wa_notify TO wa_webhook;
GRANT EXECUTE ON FUNCTION wa_notify.webhook_verify(text, text, text),
                          wa_notify.webhook_receive(bytea, text) TO wa_webhook;

ALTER ROLE wa_webhook SET log_parameter_max_length = 0;
-- the token and the app secret are in the secrets file: configure() sets the rest
SELECT wa_notify.configure(phone_number_id => '106540352242922', api_base_url => 'http://127.0.0.1:$MOCK_PORT',
                           min_delay => 0, max_delay => 0, recipient_gap => 0,
                           webhook_public_url => 'https://shop.example.com/whatsapp') AS settings_changed;
-- the second store's own number (its token is the file's store_2.access_token)
SELECT wa_notify.configure_sender('store_2', phone_number_id => '209876543210987',
                                  business_account_id => '302290129340398', portfolio => 'loja') AS sender_changed;
-- the context's "sender" column routes each order to its store's number (NULL: default)
SELECT wa_notify.watch('order_placed', '"Order"', '"Id"',
       \$ctx\$SELECT a."PhoneNumber" AS phone, a."FirstName" AS customer_name,
                o."CustomOrderNumber" AS order_number, o."OrderTotal" AS total, ss.sender
           FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId"
           LEFT JOIN store_sender ss ON ss."StoreId" = o."StoreId"
          WHERE o."Id" = \$1::int\$ctx\$) AS watch_id;
SQL
psql_shop -c 'SELECT id, event, source, order_key FROM wa_notify.watches'
psql_shop -c 'SELECT sender, phone_number_id, enabled, access_token_set FROM wa_notify.senders'
psql_shop -c "SELECT secrets_source, access_token_set, app_secret_set FROM wa_notify.status"

step "5. the webhook relay (as wa_webhook) on 127.0.0.1:$RELAY_PORT"
as_pg_bg "$DEMO/relay.pid" env PGHOST="$DEMO" PGPORT="$PGPORT_DEMO" PGDATABASE=shop PGUSER=wa_webhook \
    "$PGBIN/wa_notify_relay" --listen "127.0.0.1:$RELAY_PORT" --path /webhook >"$DEMO/relay.log" 2>&1
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$RELAY_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1
done
echo "GET /healthz -> $(curl -s "http://127.0.0.1:$RELAY_PORT/healthz")"
echo "Meta's handshake: GET /webhook?hub.mode=subscribe&hub.verify_token=...&hub.challenge=1158201444 ->" \
     "$(curl -s "http://127.0.0.1:$RELAY_PORT/webhook?hub.mode=subscribe&hub.verify_token=$VERIFY_TOKEN&hub.challenge=1158201444")"

step "6. the shop places two orders, one per store (as shop_app, plain INSERTs)"
as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DEMO" -p "$PGPORT_DEMO" -U shop_app -d shop <<'SQL'
WITH a AS (INSERT INTO "Address" ("FirstName", "PhoneNumber") VALUES ('Maria', '(11) 98765-4321') RETURNING "Id")
INSERT INTO "Order" ("CustomOrderNumber", "BillingAddressId", "OrderTotal")
SELECT '1001', a."Id", 1234.56 FROM a;
WITH a AS (INSERT INTO "Address" ("FirstName", "PhoneNumber") VALUES ('João', '(21) 99876-5432') RETURNING "Id")
INSERT INTO "Order" ("StoreId", "CustomOrderNumber", "BillingAddressId", "OrderTotal")
SELECT 2, 'B-2001', a."Id", 89.90 FROM a;
SQL
echo 'INSERT INTO "Order" ... committed (store 1 and store 2)'

step "7. the worker sends them, each from its store's number: what the mock Graph API received"
wait_for "SELECT count(*) = 2 FROM wa_notify.message WHERE status = 'sent'" 30
/usr/bin/python3 - "$DEMO/requests.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["method"] != "POST":
        continue
    auth = r["headers"].get("authorization", "")
    print(r["method"], r["path"])
    print("authorization:", auth.split(" ")[0], "<token hidden>")
    print(json.dumps(json.loads(r["body"]), ensure_ascii=False, indent=2))
PY
psql_shop -c "SELECT order_key, sender, status FROM wa_notify.message ORDER BY id"
WAMID=$(psql_shop -At -c "SELECT wamid FROM wa_notify.message WHERE order_key = '1'")
MSG_ID=$(psql_shop -At -c "SELECT id FROM wa_notify.message WHERE order_key = '1'")
echo "stored wamid: $WAMID"

step "8. one worker per database: a second shop database gets its own at CREATE EXTENSION"
as_pg "$PGBIN/createdb" -h "$DEMO" -p "$PGPORT_DEMO" shop_two
as_pg "$PGBIN/psql" -X -q -h "$DEMO" -p "$PGPORT_DEMO" -d shop_two -c "CREATE EXTENSION wa_notify"
wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wa_notify worker' AND datname = 'shop_two'" 30
psql_shop -c "SELECT backend_type, datname FROM pg_stat_activity WHERE backend_type LIKE 'wa_notify%' ORDER BY 1, 2"

step "9. the workers at rest: what the cluster commits in 5 idle seconds"
wait_for "SELECT worker_activity = 'idle' FROM wa_notify.status" 30
# the statistics of the last busy moments reach pg_stat_database a little late
sleep 2
c0=$(psql_shop -At -c "SELECT sum(xact_commit) FROM pg_stat_database")
sleep 5
c1=$(psql_shop -At -c "SELECT sum(xact_commit) FROM pg_stat_database")
echo "commits in the cluster over 5 s, two databases' workers and the launcher: $((c1 - c0 - 1))" \
     "(the measuring query's own included; 1.0's idle worker alone: ~60,000)"

step "10. Meta calls back: a signed 'delivered' status, with its pricing, through the relay"
NOW=$(date +%s)
BODY=$(printf '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"551140000000","phone_number_id":"106540352242922"},"statuses":[{"id":"%s","status":"delivered","timestamp":"%s","recipient_id":"551187654321","biz_opaque_callback_data":"%s","conversation":{"id":"c0ffee","origin":{"type":"utility"}},"pricing":{"billable":true,"pricing_model":"PMP","category":"utility","type":"regular"}}]},"field":"messages"}]}]}' "$WAMID" "$NOW" "$MSG_ID")
SIG=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$APP_SECRET" | sed 's/^.* //')
printf 'POST /webhook -> HTTP %s\n' "$(curl -s -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$SIG" \
    --data-binary "$BODY" "http://127.0.0.1:$RELAY_PORT/webhook")"
printf 'same body, forged signature -> HTTP %s\n' "$(curl -s -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$(printf '0%.0s' $(seq 64))" \
    --data-binary "$BODY" "http://127.0.0.1:$RELAY_PORT/webhook")"
wait_for "SELECT status = 'delivered' FROM wa_notify.message WHERE id = $MSG_ID" 10

step "11. what it costs: the admin's rate table and costs()"
psql_shop -c "SELECT wa_notify.set_rate('utility', '55', 0.0068, 'USD', '2026-01-01')" >/dev/null
psql_shop -c "SELECT billable, pricing_type, pricing_category FROM wa_notify.message WHERE id = $MSG_ID"
psql_shop -c "SELECT * FROM wa_notify.costs(now() - interval '1 day', now() + interval '1 day')"

step "12. history upkeep: maintain() (the worker runs it hourly) and what Prometheus reads"
psql_shop -c "SELECT jsonb_pretty(wa_notify.maintain()) AS maintain"
psql_shop -c "SELECT * FROM wa_notify.metrics_queue WHERE messages > 0" \
          -c "SELECT sender, sent_today, delivered_today, read_today, failed_today FROM wa_notify.metrics_messages"

step "13. the log, the senders and the status card"
psql_shop -c "SELECT order_key AS \"order\", phone, type, status, tracking, sent_at, delivered_at, error FROM wa_notify.message_log LIMIT 50"
psql_shop -c "SELECT * FROM wa_notify.counts()"
# (counts(), the senders' today and the card's today and month read the
# message tally, counts per hour kept as messages change: the same cost with
# a year of history; _tally_check() lists where it and the messages differ)
psql_shop -c "SELECT axis, hour, sender, k, sum(n) AS n FROM wa_notify.message_tally GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4" \
          -c "SELECT count(*) AS tally_differences FROM wa_notify._tally_check()"
psql_shop -c "SELECT sender, display_phone, api_status, queued, sent_today, delivered_today FROM wa_notify.senders"
psql_shop -x -c "SELECT * FROM wa_notify.status"
echo "relay log:"; sed 's/^/  /' "$DEMO/relay.log"
echo
echo "demo complete"
