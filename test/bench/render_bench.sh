#!/usr/bin/env bash
# Rendering benchmark (not run by CI): renders per second of
# wa_notify._render() called N times in one statement, as the worker's
# _claim() and preview() call it.  Until 1.1 each render ran one SPI query
# for the event, its settings and the carrier; now a render reads the
# transaction's settings snapshot (src/settings.c) and the events and
# carriers cached with it, so only the first render of a transaction reads
# the tables.  Prints the figure for a template and a text body.
#
#   bash test/bench/render_bench.sh [N]   (root or postgres; make install first)
set -euo pipefail
n=${1:-50000}
if [ "$(id -u)" = 0 ]; then
    d=$(mktemp -d /var/tmp/wa_render.XXXXXX); chown postgres: "$d"
    exec runuser -u postgres -- env WA_BENCH_DIR="$d" PG_CONFIG="${PG_CONFIG:-}" bash "$0" "$@"
fi
bin=$(${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --bindir)
d=${WA_BENCH_DIR:-$(mktemp -d /var/tmp/wa_render.XXXXXX)}
export PGHOST=$d PGPORT=$((20000 + RANDOM % 20000))
"$bin/initdb" -A trust -D "$d/data" >/dev/null
cat >> "$d/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$d'
CONF
trap '"$bin/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$d"' EXIT
"$bin/pg_ctl" -D "$d/data" -l "$d/log" -w start >/dev/null
psql() { "$bin/psql" -X -q -At -d postgres "$@"; }
psql -c "CREATE EXTENSION wa_notify"
psql -c "INSERT INTO wa_notify.carrier (carrier, url_pattern) VALUES ('correios', 'https://t.example/{tracking}')"

rate() {   # $1: a label; $2: use_templates
    psql -c "UPDATE wa_notify.setting SET value = '$2' WHERE name = 'use_templates'"
    local ms
    ms=$(psql -c '\timing on' -c "SELECT count(wa_notify._render('shipment_created', '5511987654321',
            jsonb_build_object('customer_name', 'Ana', 'order_number', i::text, 'carrier', 'Correios',
                               'tracking_number', 'BR' || i), i))
          FROM generate_series(1, $n) AS i" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    awk -v n="$n" -v ms="$ms" -v l="$1" 'BEGIN { printf "%-16s %8d renders in %8.1f ms: %9.0f renders/s\n", l, n, ms, n / (ms / 1000) }'
}
rate template true
rate text false
