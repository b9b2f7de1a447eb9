#!/usr/bin/env bash
# A/B of what watch() costs the shop's writes, across builds of wa_notify,
# in one session, made for a shared, noisy machine.
#
#   NAMES="main new v1.0" PG_CONFIGS="/a/pg_config /b/pg_config /c/pg_config" \
#     REPS=5 ROWS=50000 CHECKOUTS=10000 test/bench/capture_ab.sh
#
# Each PG_CONFIG is an installation with its own build of wa_notify
# installed (make PG_CONFIG=... install).  One throw-away cluster per build
# (fsync off, as capture_bench.sh; the worker serves another database, so
# it rests), each holding the nopCommerce-shaped tables twice: schema
# public with capture_bench.sh's four watches (order_placed,
# order_cancelled "OrderStatusId" = 40, order_processing "OrderStatusId" =
# 20 on "Order"; shipment_created "ShippedDateUtc" IS NOT NULL on
# "Shipment"; the context does not read $2), and schema plain without any
# trigger.  Every measurement is a pair, plain and watched, run back to
# back in the same cluster (their order alternating), and gives two
# ratios: of the wall-clock time, and of the CPU time the whole cluster
# spent (the postmaster's children: the backends, the worker, the WAL
# writer...; read from /proc, so other agents' load hardly moves it);
# builds and pairs are interleaved, REPS times.  Printed: the median
# ratios per build and column (and the median plain figures).
#   checkout  CHECKOUTS single-row INSERT transactions (pgbench, 2 clients)
#   bulk      one INSERT ... SELECT of ROWS orders
#   ship      one INSERT ... SELECT of ROWS shipped shipments
#   upd-no    one UPDATE of ROWS orders that fires nothing
#   upd-fire  one UPDATE of ROWS orders to Cancelled (fires)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
NAMES=${NAMES:?NAMES: one name per build}
PG_CONFIGS=${PG_CONFIGS:?PG_CONFIGS: one pg_config per build}
REPS=${REPS:-5}
ROWS=${ROWS:-50000}
CHECKOUTS=${CHECKOUTS:-10000}
PORT=${PORT:-55460}
if [ "$(id -u)" = 0 ]; then
    exec runuser -u postgres -- env NAMES="$NAMES" PG_CONFIGS="$PG_CONFIGS" REPS="$REPS" ROWS="$ROWS" \
        CHECKOUTS="$CHECKOUTS" PORT="$PORT" bash "$0" "$@"
fi
read -r -a names <<< "$NAMES"
read -r -a configs <<< "$PG_CONFIGS"
[ "${#names[@]}" = "${#configs[@]}" ] || { echo "NAMES and PG_CONFIGS differ in length" >&2; exit 1; }
DIR=$(mktemp -d /tmp/wa_capture_ab.XXXXXX)
stop_all() {
    for i in "${!names[@]}"; do
        "$("${configs[$i]}" --bindir)/pg_ctl" -D "$DIR/$i" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$DIR"
}
trap stop_all EXIT

q() {   # q BUILD-INDEX psql-args...
    local i=$1; shift
    "$(${configs[$i]} --bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p $((PORT + i)) -d bench "$@"
}

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
shared_buffers = 128MB
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
CONF
    "$bin/pg_ctl" -D "$DIR/$i" -l "$DIR/$i.log" -w start >/dev/null
    "$bin/createdb" -h "$DIR" -p $((PORT + i)) bench
    q "$i" -v shop="$here/test/bench/capture_shop.sql" -v ctx="$CTX" <<'SQL' >/dev/null
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
done

cat > "$DIR/checkout.sql" <<'PGB'
\set c random(1, 1000)
INSERT INTO "Order" ("CustomOrderNumber", "CustomerId", "BillingAddressId", "OrderStatusId", "ShippingStatusId", "PaymentStatusId", "OrderTotal", "ShippingMethod", "CustomerIp") VALUES (:client_id || '-' || :c || '-' || random(), :c, :c, 10, 20, 10, :c + 0.99, 'Correios', '10.0.0.1');
PGB
BULK="INSERT INTO \"Order\" (\"CustomOrderNumber\", \"CustomerId\", \"BillingAddressId\", \"OrderStatusId\", \"ShippingStatusId\", \"PaymentStatusId\", \"OrderTotal\", \"ShippingMethod\", \"CustomerIp\") SELECT g::text, g % 1000 + 1, g % 1000 + 1, 10, 20, 10, (g % 500) + 0.99, 'Correios', '10.0.0.1' FROM generate_series(1, $ROWS) g"
SHIP="INSERT INTO \"Shipment\" (\"OrderId\", \"TrackingNumber\", \"TotalWeight\", \"ShippedDateUtc\") SELECT \"Id\", 'QB' || \"Id\" || 'BR', 1.5, now() FROM \"Order\""
UPD_NO="UPDATE \"Order\" SET \"PaidDateUtc\" = now(), \"PaymentStatusId\" = 30"
UPD_FIRE="UPDATE \"Order\" SET \"OrderStatusId\" = 40"

# empty the side's tables (and the staging table); orders loaded without
# triggers (session_replication_role) when the measured statement needs them
prepare() {   # prepare BUILD SCHEMA WHAT
    local load=""
    case $3 in ship|updno|updfire) load="SET session_replication_role = replica; $BULK; RESET session_replication_role;" ;; esac
    q "$1" -c "SET search_path = $2" -c "TRUNCATE \"Shipment\", \"Order\"; TRUNCATE wa_notify.capture_queue; $load" \
        -c "VACUUM ANALYZE \"Order\"" -c "CHECKPOINT" >/dev/null
}
# CPU time (clock ticks) the cluster spent: its postmaster, its live
# children and (cutime, cstime) the children it has reaped
cluster_cpu() {   # cluster_cpu BUILD
    local pm
    pm=$(head -1 "$DIR/$1/postmaster.pid")
    { for c in $(pgrep -P "$pm"); do awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || true; done
      awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat"; } | awk '{s += $1} END {print s}'
}
children() { pgrep -P "$(head -1 "$DIR/$1/postmaster.pid")" | wc -l; }
# "wall-ms cpu-ticks" of the measured statement (checkout: of CHECKOUTS transactions)
measure() {   # measure BUILD SCHEMA WHAT
    local i=$1 nsp=$2 before kids wall
    prepare "$i" "$nsp" "$3"
    kids=$(children "$i")
    before=$(cluster_cpu "$i")
    wall=$(run_statement "$@")
    # the session's backend counts once the postmaster has reaped it
    for _ in $(seq 50); do [ "$(children "$i")" -le "$kids" ] && break; sleep 0.05; done
    echo "$wall $(( $(cluster_cpu "$i") - before ))"
}
run_statement() {
    local i=$1 nsp=$2 sql
    case $3 in
    checkout)
        PGOPTIONS="-c search_path=$nsp" "$(${configs[$i]} --bindir)/pgbench" -n -h "$DIR" -p $((PORT + i)) \
            -f "$DIR/checkout.sql" -c 2 -j 2 -t $((CHECKOUTS / 2)) bench 2>&1 |
            sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1 | awk -v n="$CHECKOUTS" '{printf "%.1f\n", n * 1000 / $1}'
        return ;;
    bulk) sql=$BULK ;; ship) sql=$SHIP ;; updno) sql=$UPD_NO ;; updfire) sql=$UPD_FIRE ;;
    esac
    q "$i" -c "SET search_path = $nsp" -c '\timing on' -c "$sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}

whats="checkout bulk ship updno updfire"
for r in $(seq "$REPS"); do
    n=${#names[@]}
    for k in $(seq 0 $((n - 1))); do
        i=$(( (k + r) % n ))            # a different build first each round
        for what in $whats; do
            if (( (r + k) % 2 )); then
                p=$(measure "$i" plain "$what"); w=$(measure "$i" public "$what")
            else
                w=$(measure "$i" public "$what"); p=$(measure "$i" plain "$what")
            fi
            # wall ratio, plain wall ms, CPU ratio, plain CPU ticks
            echo "$w $p" | awk '{printf "%.4f %s %.4f %s\n", $1 / $3, $3, $2 / ($4 > 0 ? $4 : 1), $4}' >> "$DIR/${names[$i]}.$what"
        done
        echo "round $r ${names[$i]}: wall $(for what in $whats; do tail -1 "$DIR/${names[$i]}.$what" | cut -d' ' -f1; done | tr '\n' ' ')cpu $(for what in $whats; do tail -1 "$DIR/${names[$i]}.$what" | cut -d' ' -f3; done | tr '\n' ' ')(load $(cut -d' ' -f1 /proc/loadavg))" >&2
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\nwa_notify capture A/B: %s rows (checkout: %s transactions, 2 clients), %s rounds; PostgreSQL %s\n' \
    "$ROWS" "$CHECKOUTS" "$REPS" "$("${configs[0]}" --version | awk '{print $2}')"
for col in 1 3; do
    if [ $col = 1 ]; then printf '\nwall-clock time, watched / plain (median of the per-pair ratios; lower is better)\n'
    else printf '\nCPU time of the cluster, watched / plain (median of the per-pair ratios; lower is better)\n'; fi
    printf '%-12s | %-9s | %-9s | %-9s | %-9s | %-9s\n' build checkout bulk ship upd-no upd-fire
    for nm in "${names[@]}"; do
        line=$(printf '%-12s' "$nm")
        for what in $whats; do line+=$(printf ' | %8.3fx' "$(cut -d' ' -f$col "$DIR/$nm.$what" | median)"); done
        echo "$line"
    done
    line=$(printf '%-12s' "$([ $col = 1 ] && echo 'plain ms' || echo 'plain ticks')")
    for what in $whats; do line+=$(printf ' | %9.0f' "$(cat "$DIR"/*."$what" | cut -d' ' -f$((col + 1)) | median)"); done
    echo "$line"
done
