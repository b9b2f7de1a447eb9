#!/usr/bin/env bash
# History benchmark (issue 14); see history_bench.py.  Runs as postgres.
#   test/bench/history_bench.sh [--rows 10000000] [--messages 20000]   (or ROWS=...)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
if [ "$(id -u)" = 0 ]; then
    exec runuser -u postgres -- env PYTHONUNBUFFERED=1 PG_CONFIG="$PG_CONFIG" ROWS="${ROWS:-10000000}" /usr/bin/python3 "$here/history_bench.py" "$@"
fi
exec /usr/bin/python3 -u "$here/history_bench.py" "$@"
