#!/usr/bin/env bash
# Auto max_in_flight benchmark; see in_flight_bench.py.  Runs as postgres.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
if [ "$(id -u)" = 0 ]; then
    exec runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" TMPDIR=/tmp /usr/bin/python3 "$here/in_flight_bench.py" "$@"
fi
exec /usr/bin/python3 "$here/in_flight_bench.py" "$@"
