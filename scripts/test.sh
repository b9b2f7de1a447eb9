#!/usr/bin/env bash
# Run the whole wa_notify test suite: pg_regress (on a temporary instance with
# the library preloaded) and the TAP tests (worker, capture, dispatch,
# webhooks, relay), as the postgres user, in a scratch copy of the tree.
#
#   sudo scripts/test.sh                      everything
#   REGRESS="config phone" PROVE_TESTS="test/t/001_*.pl" scripts/test.sh
#   PG_CONFIG=/path/to/pg_config scripts/test.sh   another installation
#   WA_SKIP_DEPS=1 scripts/test.sh            do not check Debian packages
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" = 0 ] || { echo "run as root (it installs packages and the extension)" >&2; exit 1; }
[ -n "${WA_SKIP_DEPS:-}" ] || bash scripts/install-deps.sh
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

make -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
# The HA test (test/t/600) runs a pg_auto_failover monitor on the tested
# installation: Debian installs the pgautofailover extension for /usr only,
# so a private prefix gets a copy of its files.
sharedir=$("$PG_CONFIG" --sharedir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
if [ -f /usr/lib/postgresql/15/lib/pgautofailover.so ] && [ "$pkglibdir" != /usr/lib/postgresql/15/lib ]; then
    cp -p /usr/share/postgresql/15/extension/pgautofailover* "$sharedir/extension/"
    cp -p /usr/lib/postgresql/15/lib/pgautofailover.so "$pkglibdir/"
fi

# PostgreSQL refuses to run as root: test from a copy the postgres user owns.
scratch=$(mktemp -d "${WA_TEST_TMP:-/var/tmp}/wa_notify_test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
tar --exclude=.git --exclude='tmp_check*' --exclude=results -cf - . | tar -C "$scratch" -xf -
chown -R postgres: "$scratch"
chmod 755 "$scratch"

args=(PG_CONFIG="$PG_CONFIG")
[ -n "${REGRESS:-}" ] && args+=(REGRESS="$REGRESS")
[ -n "${PROVE_TESTS:-}" ] && args+=(PROVE_TESTS="$PROVE_TESTS")
status=0
runuser -u postgres -- env PATH="$PATH" make -C "$scratch" -s installcheck "${args[@]}" || status=$?
if [ $status -ne 0 ]; then
    # keep the scratch tree for a look
    trap - EXIT
    if [ -f "$scratch/regression.diffs" ]; then head -200 "$scratch/regression.diffs"; fi
    echo "test tree kept in $scratch" >&2
fi
exit $status
