#!/usr/bin/env bash
# Capture benchmark: what watch() costs the shop's own writes.
#
#   test/bench/capture_bench.sh            (as root or postgres; builds nothing:
#                                           run "make install" first)
#   PG_CONFIG=... ROWS=100000 REPS=3 CLIENTS=2 test/bench/capture_bench.sh
#   RESOLVE=0 ...                          (skip the _resolve_pending timing)
#
# A throw-away cluster (fsync and synchronous_commit off, so that commit
# flushes do not hide the triggers' CPU cost) with a nopCommerce-shaped
# "Order" table (its indexes) and "Shipment" table.  For each variant it
# measures:
#   checkout  ROWS single-row INSERT transactions of an order (pgbench,
#             CLIENTS clients, custom script), as orders/s;
#   bulk      one INSERT ... SELECT of ROWS orders (median of REPS);
#   ship      one INSERT ... SELECT of ROWS shipped shipments (median of REPS);
#   upd-no    one UPDATE of ROWS orders that fires no event (median of REPS);
#   upd-fire  one UPDATE of ROWS orders to Cancelled, firing (median of REPS);
# and prints each against the plain table (no trigger); then the time the
# worker's _resolve_pending() takes for ROWS captured orders.
#
# Variants:
#   plain       no trigger
#   wa_notify   wa_notify.watch(): C row trigger (1.0: one per watch and event
#               kind, transition in a WHEN clause naming the columns; 1.1: one
#               per table and event kind, every fires_when evaluated in C),
#               the context does not read $2 (the row is not kept as jsonb)
#   wa_notify_c the same with a context that reads $2->>'CustomerIp' (that
#               column staged)
#   wa_notify_j the same with a context that reads a timestamp of $2 (the whole
#               row staged as jsonb)
#   plpgsql     hand-written PL/pgSQL row trigger inserting into wa_notify.message
#   plpgsql_q   hand-written PL/pgSQL row trigger inserting into a lean queue table
#   stmt_tt     PL/pgSQL statement trigger with transition tables, one
#               INSERT ... SELECT into wa_notify.message per statement
#   pgq         PgQ's C trigger pgq.logutriga (postgresql-15-pgq3)
# Network: none (Unix socket in /tmp only).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
ROWS=${ROWS:-100000}
REPS=${REPS:-3}
CLIENTS=${CLIENTS:-2}
RESOLVE=${RESOLVE:-1}
VARIANTS=${VARIANTS:-"plain wa_notify wa_notify_c wa_notify_j plpgsql plpgsql_q stmt_tt pgq"}
if [ "$(id -u)" = 0 ]; then
    exec runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" ROWS="$ROWS" REPS="$REPS" \
        CLIENTS="$CLIENTS" VARIANTS="$VARIANTS" RESOLVE="$RESOLVE" PORT="${PORT:-}" bash "$0" "$@"
fi
BIN=$("$PG_CONFIG" --bindir)
PGBENCH=$BIN/pgbench; [ -x "$PGBENCH" ] || PGBENCH=pgbench
DIR=$(mktemp -d /tmp/wa_capture_bench.XXXXXX)
PORT=${PORT:-55437}
export PGHOST=$DIR PGPORT=$PORT PGDATABASE=bench PGOPTIONS="-c client_min_messages=warning"
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
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
CONF
"$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
"$BIN/createdb" bench
q() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# PgQ only when its variant is asked for (postgresql-15-pgq3 may be absent)
case " $VARIANTS " in *" pgq "*) q -c 'CREATE EXTENSION pgq' -c "SELECT pgq.create_queue('orders')" >/dev/null ;; esac
q -v shop="$here/test/bench/capture_shop.sql" <<'SQL'
CREATE EXTENSION wa_notify;
\i :shop
-- the peers
CREATE TABLE order_queue (id bigserial PRIMARY KEY, event text NOT NULL, order_key text NOT NULL,
                          payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION plpgsql_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW."OrderStatusId" IS DISTINCT FROM OLD."OrderStatusId" THEN
        INSERT INTO wa_notify.message (event, order_key, watch_id, source_row)
        VALUES (TG_ARGV[0], NEW."Id"::text, 0, to_jsonb(NEW))
        ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION plpgsql_capture_ship() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW."ShippedDateUtc" IS NOT NULL THEN
        INSERT INTO wa_notify.message (event, order_key, watch_id, source_row)
        VALUES ('shipment_created', NEW."OrderId"::text, 0, to_jsonb(NEW))
        ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION plpgsql_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_queue (event, order_key, payload) VALUES (TG_ARGV[0], NEW."Id"::text, to_jsonb(NEW));
    RETURN NULL;
END $$;
CREATE FUNCTION stmt_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO wa_notify.message (event, order_key, watch_id, source_row)
    SELECT TG_ARGV[0], n."Id"::text, 0, to_jsonb(n) FROM new_rows n
    ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION stmt_capture_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO wa_notify.message (event, order_key, watch_id, source_row)
    SELECT TG_ARGV[0], n."Id"::text, 0, to_jsonb(n)
      FROM new_rows n JOIN old_rows o ON o."Id" = n."Id"
     WHERE n."OrderStatusId" = 40 AND o."OrderStatusId" IS DISTINCT FROM 40
    ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION stmt_capture_ship() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO wa_notify.message (event, order_key, watch_id, source_row)
    SELECT 'shipment_created', n."OrderId"::text, 0, to_jsonb(n) FROM new_rows n
     WHERE n."ShippedDateUtc" IS NOT NULL
    ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;
    RETURN NULL;
END $$;
SQL

CTXC='SELECT a."PhoneNumber" AS phone, $2->>'"'"'CustomerIp'"'"' AS ip, a."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number, o."OrderTotal" AS total FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId" WHERE o."Id" = $1::int'
CTXJ='SELECT a."PhoneNumber" AS phone, $2->>'"'"'CreatedOnUtc'"'"' AS created, a."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number, o."OrderTotal" AS total FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId" WHERE o."Id" = $1::int'
CTX='SELECT a."PhoneNumber" AS phone, a."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number, o."OrderTotal" AS total FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId" WHERE o."Id" = $1::int'

# drop every capture trigger and queue row, then install the variant's
setup() {
    local v=$1
    q <<SQL >/dev/null
SELECT wa_notify.unwatch(event, to_regclass(source)) FROM wa_notify.watch;
DROP TRIGGER IF EXISTS bench_ins ON "Order"; DROP TRIGGER IF EXISTS bench_upd ON "Order";
DROP TRIGGER IF EXISTS bench_ship ON "Shipment";
TRUNCATE wa_notify.message, wa_notify.capture_queue, order_queue, "Shipment", "Order";
DO \$\$ BEGIN
    IF to_regclass('pgq.event_template') IS NOT NULL THEN TRUNCATE pgq.event_template; END IF;
END \$\$;
SQL
    case $v in
    plain) ;;
    wa_notify|wa_notify_c|wa_notify_j)
        case $v in wa_notify) c=$CTX ;; wa_notify_c) c=$CTXC ;; *) c=$CTXJ ;; esac
        q -v ctx="$c" <<'SQL' >/dev/null
-- 1.1: contexts run as wa_notify_context (absent in 1.0)
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wa_notify_context') THEN
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO wa_notify_context;
    END IF;
END $$;
SELECT wa_notify.watch('order_placed', '"Order"', '"Id"', :'ctx');
SELECT wa_notify.watch('order_cancelled', '"Order"', '"Id"', :'ctx', '"OrderStatusId" = 40');
SELECT wa_notify.watch('order_processing', '"Order"', '"Id"', :'ctx', '"OrderStatusId" = 20');
SELECT wa_notify.watch('shipment_created', '"Shipment"', '"OrderId"', :'ctx', '"ShippedDateUtc" IS NOT NULL');
SQL
        ;;
    plpgsql)
        q <<'SQL' >/dev/null
CREATE TRIGGER bench_ins AFTER INSERT ON "Order" FOR EACH ROW EXECUTE FUNCTION plpgsql_capture('order_placed');
CREATE TRIGGER bench_upd AFTER UPDATE ON "Order" FOR EACH ROW EXECUTE FUNCTION plpgsql_capture('order_cancelled');
CREATE TRIGGER bench_ship AFTER INSERT ON "Shipment" FOR EACH ROW EXECUTE FUNCTION plpgsql_capture_ship();
SQL
        ;;
    plpgsql_q)
        q <<'SQL' >/dev/null
CREATE TRIGGER bench_ins AFTER INSERT ON "Order" FOR EACH ROW EXECUTE FUNCTION plpgsql_queue('order_placed');
CREATE TRIGGER bench_upd AFTER UPDATE ON "Order" FOR EACH ROW
  WHEN (NEW."OrderStatusId" = 40 AND OLD."OrderStatusId" IS DISTINCT FROM 40) EXECUTE FUNCTION plpgsql_queue('order_cancelled');
CREATE TRIGGER bench_ship AFTER INSERT ON "Shipment" FOR EACH ROW EXECUTE FUNCTION plpgsql_capture_ship();
SQL
        ;;
    stmt_tt)
        q <<'SQL' >/dev/null
CREATE TRIGGER bench_ins AFTER INSERT ON "Order" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION stmt_capture('order_placed');
CREATE TRIGGER bench_upd AFTER UPDATE ON "Order" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION stmt_capture_upd('order_cancelled');
CREATE TRIGGER bench_ship AFTER INSERT ON "Shipment" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION stmt_capture_ship();
SQL
        ;;
    pgq)
        q <<'SQL' >/dev/null
CREATE TRIGGER bench_ins AFTER INSERT ON "Order" FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('orders');
CREATE TRIGGER bench_upd AFTER UPDATE ON "Order" FOR EACH ROW
  WHEN (NEW."OrderStatusId" = 40 AND OLD."OrderStatusId" IS DISTINCT FROM 40) EXECUTE FUNCTION pgq.logutriga('orders');
CREATE TRIGGER bench_ship AFTER INSERT ON "Shipment" FOR EACH ROW
  WHEN (NEW."ShippedDateUtc" IS NOT NULL) EXECUTE FUNCTION pgq.logutriga('orders');
SQL
        ;;
    esac
    q -c 'CHECKPOINT' >/dev/null
}

# milliseconds of one statement
timed() {
    q -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

BULK_ORDERS="INSERT INTO \"Order\" (\"CustomOrderNumber\", \"CustomerId\", \"BillingAddressId\", \"OrderStatusId\", \"ShippingStatusId\", \"PaymentStatusId\", \"OrderTotal\", \"ShippingMethod\", \"CustomerIp\") SELECT g::text, g % 1000 + 1, g % 1000 + 1, 10, 20, 10, (g % 500) + 0.99, 'Correios', '10.0.0.1' FROM generate_series(1, $ROWS) g"
BULK_SHIP="INSERT INTO \"Shipment\" (\"OrderId\", \"TrackingNumber\", \"TotalWeight\", \"ShippedDateUtc\") SELECT \"Id\", 'QB' || \"Id\" || 'BR', 1.5, now() FROM \"Order\""
UPD_NO="UPDATE \"Order\" SET \"PaidDateUtc\" = now(), \"PaymentStatusId\" = 30"
UPD_FIRE="UPDATE \"Order\" SET \"OrderStatusId\" = 40"

cat > "$DIR/checkout.sql" <<'PGB'
\set c random(1, 1000)
INSERT INTO "Order" ("CustomOrderNumber", "CustomerId", "BillingAddressId", "OrderStatusId", "ShippingStatusId", "PaymentStatusId", "OrderTotal", "ShippingMethod", "CustomerIp") VALUES (:client_id || '-' || :c || '-' || random(), :c, :c, 10, 20, 10, :c + 0.99, 'Correios', '10.0.0.1');
PGB

# Round-robin: each repetition runs every variant, so a change of load on
# the machine shifts all variants alike; figures are medians of REPS.
declare -A R
mkdir -p "$DIR/r"
for r in $(seq "$REPS"); do
    for v in $VARIANTS; do
        # checkout: ROWS single-row transactions
        setup "$v"
        per_client=$(( ROWS / CLIENTS ))
        "$PGBENCH" -n -f "$DIR/checkout.sql" -c "$CLIENTS" -j "$CLIENTS" -t "$per_client" bench 2>&1 |
            sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1 >> "$DIR/r/$v.checkout"
        for what in bulk ship updno updfire; do
            setup "$v"
            case $what in
            bulk) timed "$BULK_ORDERS" >> "$DIR/r/$v.$what" ;;
            ship) q -c "ALTER TABLE \"Order\" DISABLE TRIGGER USER" -c "$BULK_ORDERS" -c "ALTER TABLE \"Order\" ENABLE TRIGGER USER" -c "CHECKPOINT" >/dev/null
                  timed "$BULK_SHIP" >> "$DIR/r/$v.$what" ;;
            updno|updfire)
                  q -c "ALTER TABLE \"Order\" DISABLE TRIGGER USER" -c "$BULK_ORDERS" -c "ALTER TABLE \"Order\" ENABLE TRIGGER USER" -c "VACUUM ANALYZE \"Order\"" -c "CHECKPOINT" >/dev/null
                  if [ $what = updno ]; then timed "$UPD_NO" >> "$DIR/r/$v.$what"; else timed "$UPD_FIRE" >> "$DIR/r/$v.$what"; fi ;;
            esac
        done
        queued=$(q -At -c "SELECT (SELECT count(*) FROM wa_notify.message) + (SELECT count(*) FROM wa_notify.capture_queue) + (SELECT count(*) FROM order_queue) + coalesce((SELECT sum(n_live_tup) FROM pg_stat_user_tables WHERE relid = to_regclass('pgq.event_template')), 0)")
        echo "  round $r: $v done (its last run queued $queued rows)" >&2
    done
done
for v in $VARIANTS; do
    for what in checkout bulk ship updno updfire; do
        R[$v,$what]=$(median < "$DIR/r/$v.$what")
    done
done

# the work moved out of the checkout: resolving ROWS captured orders
# (staged rows into wa_notify.message, context query, phone) after commit
RESOLVE_MS=
if [ "$RESOLVE" != 0 ] && [[ " $VARIANTS " == *" wa_notify "* ]]; then
    setup wa_notify
    q -c "$BULK_ORDERS" >/dev/null
    RESOLVE_MS=$(timed "SELECT wa_notify._resolve_pending($ROWS)")
fi

printf '\nwa_notify capture benchmark: %s rows, %s clients, median of %s; PostgreSQL %s\n' \
    "$ROWS" "$CLIENTS" "$REPS" "$("$PG_CONFIG" --version | awk '{print $2}')"
printf '(ratios: time relative to the plain table; lower is better)\n\n'
printf '%-11s | %-22s | %-20s | %-20s | %-20s | %-20s\n' variant "checkout orders/s" "bulk INSERT ms" "shipments INSERT ms" "UPDATE no-fire ms" "UPDATE firing ms"
for v in $VARIANTS; do
    printf '%-11s | %9.0f (%5.2fx)      | %9.1f (%5.2fx)  | %9.1f (%5.2fx)  | %9.1f (%5.2fx)  | %9.1f (%5.2fx)\n' "$v" \
        "${R[$v,checkout]}" "$(echo "${R[plain,checkout]} / ${R[$v,checkout]}" | bc -l)" \
        "${R[$v,bulk]}" "$(echo "${R[$v,bulk]} / ${R[plain,bulk]}" | bc -l)" \
        "${R[$v,ship]}" "$(echo "${R[$v,ship]} / ${R[plain,ship]}" | bc -l)" \
        "${R[$v,updno]}" "$(echo "${R[$v,updno]} / ${R[plain,updno]}" | bc -l)" \
        "${R[$v,updfire]}" "$(echo "${R[$v,updfire]} / ${R[plain,updfire]}" | bc -l)"
done
if [ -n "$RESOLVE_MS" ]; then
    printf '\nafter commit: _resolve_pending(%s) of %s captured orders: %.0f ms (%.0f messages/s)\n' \
        "$ROWS" "$ROWS" "$RESOLVE_MS" "$(echo "$ROWS * 1000 / $RESOLVE_MS" | bc -l)"
fi
