#!/usr/bin/env bash
# What watch() costs the shop's writes, counted in CPU instructions: exact
# and independent of the machine's load (callgrind), so builds can be
# compared on a shared machine where wall-clock figures spread by 30 %.
#
#   NAMES="main new v1.0" PG_CONFIGS="/a/pg_config /b/pg_config /c/pg_config" \
#     ROWS=5000 CHECKOUTS=500 test/bench/capture_instructions.sh
#
# Each PG_CONFIG is an installation with its own build of wa_notify
# installed.  One cluster per build with capture_bench.sh's tables twice
# (schema public with its four watches, schema plain without trigger, as
# capture_ab.sh), then every statement runs in a single-user backend under
# valgrind --tool=callgrind (no worker runs: single-user mode starts none).
# A statement's cost is the instructions of a session that warms up (the
# same statement on 10 rows: caches loaded, fires_when compiled) and then
# runs it, minus those of a session that only warms up; both start from the
# same data.  Printed per build and column: watched / plain, and the extra
# instructions per row (per transaction for checkout).
#   checkout  CHECKOUTS single-row INSERT transactions (server side only:
#             no client, no network, so the ratio is larger than a
#             pgbench one; the difference per transaction is the same)
#   bulk, ship, upd-no, upd-fire   as capture_bench.sh, on ROWS rows
# WHATS="ship" measures only some columns; CALLGRIND_DIR=dir keeps the
# callgrind files there (callgrind_annotate shows where the cost is).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
NAMES=${NAMES:?NAMES: one name per build}
PG_CONFIGS=${PG_CONFIGS:?PG_CONFIGS: one pg_config per build}
ROWS=${ROWS:-5000}
CHECKOUTS=${CHECKOUTS:-500}
PORT=${PORT:-55480}
WHATS=${WHATS:-checkout bulk ship updno updfire}
CALLGRIND_DIR=${CALLGRIND_DIR:-}
if [ "$(id -u)" = 0 ]; then
    exec runuser -u postgres -- env NAMES="$NAMES" PG_CONFIGS="$PG_CONFIGS" ROWS="$ROWS" \
        CHECKOUTS="$CHECKOUTS" PORT="$PORT" WHATS="$WHATS" CALLGRIND_DIR="$CALLGRIND_DIR" bash "$0" "$@"
fi
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
read -r -a names <<< "$NAMES"
read -r -a configs <<< "$PG_CONFIGS"
[ "${#names[@]}" = "${#configs[@]}" ] || { echo "NAMES and PG_CONFIGS differ in length" >&2; exit 1; }
DIR=$(mktemp -d /tmp/wa_capture_ir.XXXXXX)
trap 'rm -rf "$DIR"' EXIT

CTX='SELECT a."PhoneNumber" AS phone, a."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number, o."OrderTotal" AS total FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId" WHERE o."Id" = $1::int'
for i in "${!names[@]}"; do
    bin=$("${configs[$i]}" --bindir)
    "$bin/initdb" -D "$DIR/$i" -A trust >/dev/null
    cat >> "$DIR/$i/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $((PORT + i))
shared_preload_libraries = 'wa_notify'
wa_notify.database = 'postgres'
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
CONF
    "$bin/pg_ctl" -D "$DIR/$i" -l "$DIR/$i.log" -w start >/dev/null
    "$bin/createdb" -h "$DIR" -p $((PORT + i)) bench
    "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p $((PORT + i)) -d bench \
        -v shop="$here/test/bench/capture_shop.sql" -v ctx="$CTX" <<'SQL' >/dev/null
CREATE EXTENSION wa_notify;
\i :shop
CREATE SCHEMA plain;
SET search_path = plain;
\i :shop
RESET search_path;
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
    "$bin/pg_ctl" -D "$DIR/$i" -m fast -w stop >/dev/null
done

orders() {   # orders N FROM: INSERT of N orders numbered from FROM
    echo "INSERT INTO \"Order\" (\"CustomOrderNumber\", \"CustomerId\", \"BillingAddressId\", \"OrderStatusId\", \"ShippingStatusId\", \"PaymentStatusId\", \"OrderTotal\", \"ShippingMethod\", \"CustomerIp\") SELECT g::text, g % 1000 + 1, g % 1000 + 1, 10, 20, 10, (g % 500) + 0.99, 'Correios', '10.0.0.1' FROM generate_series($2, $2 + $1 - 1) g"
}
checkouts() {   # checkouts N: N single-row order transactions
    for n in $(seq "$1"); do
        echo "INSERT INTO \"Order\" (\"CustomOrderNumber\", \"CustomerId\", \"BillingAddressId\", \"OrderStatusId\", \"ShippingStatusId\", \"PaymentStatusId\", \"OrderTotal\", \"ShippingMethod\", \"CustomerIp\") VALUES ('c-$n', $((n % 1000 + 1)), $((n % 1000 + 1)), 10, 20, 10, 9.99, 'Correios', '10.0.0.1')"
    done
}
# the commands of a session: warm-up (10 rows), then, if asked, the statement
session() {   # session WHAT MEASURED
    case $1 in
    checkout) checkouts 10; [ "$2" = 1 ] && checkouts "$CHECKOUTS" ;;
    bulk) orders 10 1000001; [ "$2" = 1 ] && orders "$ROWS" 1 ;;
    ship) echo "INSERT INTO \"Shipment\" (\"OrderId\", \"TrackingNumber\", \"ShippedDateUtc\") SELECT \"Id\", 'W', now() FROM \"Order\" WHERE \"Id\" <= 10"
          [ "$2" = 1 ] && echo "INSERT INTO \"Shipment\" (\"OrderId\", \"TrackingNumber\", \"TotalWeight\", \"ShippedDateUtc\") SELECT \"Id\", 'QB' || \"Id\" || 'BR', 1.5, now() FROM \"Order\" WHERE \"Id\" > 10" ;;
    updno) echo "UPDATE \"Order\" SET \"PaymentStatusId\" = 31 WHERE \"Id\" <= 10"
           [ "$2" = 1 ] && echo "UPDATE \"Order\" SET \"PaidDateUtc\" = now(), \"PaymentStatusId\" = 30 WHERE \"Id\" > 10" ;;
    updfire) echo "UPDATE \"Order\" SET \"OrderStatusId\" = 40 WHERE \"Id\" <= 10"
             [ "$2" = 1 ] && echo "UPDATE \"Order\" SET \"OrderStatusId\" = 40 WHERE \"Id\" > 10" ;;
    esac
    true
}
single() {   # single BUILD: a single-user backend reading commands from stdin
    "$("${configs[$1]}" --bindir)/postgres" --single -D "$DIR/$1" -c search_path="$2" -c client_min_messages=warning bench
}
prepare() {   # prepare BUILD SCHEMA WHAT
    {
        echo 'TRUNCATE "Shipment", "Order", wa_notify.capture_queue'
        echo "ALTER SEQUENCE \"Order_Id_seq\" RESTART"
        case $3 in ship|updno|updfire) echo "SET session_replication_role = replica"; orders $((ROWS + 10)) 1; echo "RESET session_replication_role" ;; esac
        echo 'VACUUM ANALYZE "Order"'
        echo 'CHECKPOINT'
    } | single "$1" "$2" >/dev/null 2>&1
}
instructions() {   # instructions BUILD SCHEMA WHAT MEASURED
    prepare "$1" "$2" "$3"
    local out=/dev/null
    [ -n "$CALLGRIND_DIR" ] && out="$CALLGRIND_DIR/callgrind.${names[$1]}.$2.$3.$4"
    session "$3" "$4" | valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$("${configs[$1]}" --bindir)/postgres" --single -D "$DIR/$1" -c search_path="$2" \
        -c client_min_messages=warning bench 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

whats=$WHATS
printf '\nwa_notify capture cost in instructions (callgrind): %s rows, checkout %s transactions; PostgreSQL %s\n' \
    "$ROWS" "$CHECKOUTS" "$("${configs[0]}" --version | awk '{print $2}')"
printf '(watched / plain, then the extra instructions per row or transaction; lower is better)\n\n'
printf '%-12s | %-17s | %-17s | %-17s | %-17s | %-17s\n' build checkout bulk ship upd-no upd-fire
for i in "${!names[@]}"; do
    line=$(printf '%-12s' "${names[$i]}")
    plains=""
    for what in $whats; do
        declare -A cost=()
        for nsp in plain public; do
            base=$(instructions "$i" "$nsp" "$what" 0)
            full=$(instructions "$i" "$nsp" "$what" 1)
            cost[$nsp]=$(( full - base ))
        done
        per=$([ "$what" = checkout ] && echo "$CHECKOUTS" || echo "$ROWS")
        line+=$(awk -v w="${cost[public]}" -v p="${cost[plain]}" -v n="$per" \
            'BEGIN {printf " | %6.3fx %+8.0f", w / p, (w - p) / n}')
        plains+=$(awk -v p="${cost[plain]}" -v n="$per" 'BEGIN {printf " | %17.0f", p / n}')
        echo "  ${names[$i]} $what: plain ${cost[plain]} watched ${cost[public]}" >&2
    done
    echo "$line"
done
echo "(plain, instructions per row or transaction, last build:$plains )"
