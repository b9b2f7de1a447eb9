#!/usr/bin/env bash
# Run the dispatcher, capture and webhook tests with the library built under
# AddressSanitizer (make asan).  The server itself is not instrumented: the
# ASan runtime is preloaded (LD_PRELOAD) into every process of the run, so
# that the instrumented wa_notify.so loads into the postmaster and into
# each backend and the worker.  Leak detection is off (PostgreSQL frees by
# memory context and at exit, not by free()).  Each report goes to a file;
# any report fails the run and is printed.  Afterwards the library is built
# and installed again without the sanitizer.
#
#   sudo scripts/asan.sh                     (as scripts/test.sh: runs as postgres)
#   PG_CONFIG=/path/to/pg_config scripts/asan.sh
#   REGRESS="webhook" PROVE_TESTS="test/t/300_relay.pl" scripts/asan.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" = 0 ] || { echo "run as root (it installs the extension and runs the tests as postgres)" >&2; exit 1; }
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CC=${CC:-gcc}
libasan=$($CC -print-file-name=libasan.so)
[ -e "$libasan" ] || { echo "libasan.so not found for $CC (Debian: libasan8)" >&2; exit 1; }

# The preloaded runtime must be able to start the server at all: on Debian 12
# it cannot (libp11-kit's constructor, loaded by the server through gnutls,
# calls newlocale() before the ASan runtime is initialised, and the runtime's
# lazy initialisation inside it deadlocks gettext).  Then use make valgrind.
bindir=$("$PG_CONFIG" --bindir)
if ! timeout 20 env LD_PRELOAD="$libasan" ASAN_OPTIONS=detect_leaks=0 "$bindir/postgres" -V >/dev/null 2>&1; then
    echo "asan: the server does not start with $libasan preloaded (a known deadlock of the ASan runtime with libp11-kit on Debian 12); use scripts/valgrind.sh (make valgrind)" >&2
    exit 2
fi

REGRESS=${REGRESS:-$(ls sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | tr '\n' ' ')}
PROVE_TESTS=${PROVE_TESTS:-test/t/003_*.pl test/t/110_*.pl test/t/111_*.pl test/t/201_*.pl test/t/202_*.pl test/t/203_*.pl test/t/204_*.pl test/t/205_*.pl test/t/206_*.pl test/t/300_*.pl}

rebuild_plain() {
    make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
    make -s PG_CONFIG="$PG_CONFIG" >/dev/null
    make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}
trap rebuild_plain EXIT

make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
make -s PG_CONFIG="$PG_CONFIG" COPT="-fsanitize=address -fno-omit-frame-pointer -fno-sanitize-recover=all" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null

scratch=$(mktemp -d "${WA_TEST_TMP:-/var/tmp}/wa_notify_asan.XXXXXX")
tar --exclude=.git --exclude='tmp_check*' --exclude=results -cf - . | tar -C "$scratch" -xf -
mkdir "$scratch/asan_reports"
chown -R postgres: "$scratch"
chmod 755 "$scratch"

# halt on the first error (its report is the file); the process exits 99,
# which the postmaster treats as a crash and the test sees
asan_options="detect_leaks=0:halt_on_error=1:exitcode=99:log_path=$scratch/asan_reports/asan:detect_odr_violation=0"
status=0
runuser -u postgres -- env PATH="$PATH" LD_PRELOAD="$libasan" ASAN_OPTIONS="$asan_options" \
    WA_CHURN_MESSAGES="${WA_CHURN_MESSAGES:-5000}" \
    make -C "$scratch" -s installcheck PG_CONFIG="$PG_CONFIG" REGRESS="$REGRESS" PROVE_TESTS="$PROVE_TESTS" || status=$?

reports=$(ls "$scratch"/asan_reports/ 2>/dev/null | wc -l)
if [ "$reports" -gt 0 ]; then
    echo "AddressSanitizer: $reports report(s):" >&2
    cat "$scratch"/asan_reports/* >&2
    status=1
fi
echo "asan: tests exit status $status, $reports sanitizer report(s)"
if [ $status -eq 0 ]; then rm -rf "$scratch"; else echo "test tree kept in $scratch" >&2; fi
exit $status
