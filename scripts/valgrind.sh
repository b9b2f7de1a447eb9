#!/usr/bin/env bash
# Run the dispatcher, capture and webhook tests with every server process
# under valgrind's memcheck (make valgrind): the memory checker that needs
# no rebuild of PostgreSQL.  The postmaster of every test cluster starts
# under valgrind (--trace-children=yes: backends and the worker are its
# forks), through a wrapper that temporarily takes the place of
# $(bindir)/postgres -- so use a private installation (PG_CONFIG of a
# prefix of your own); initdb's bootstrap runs without valgrind.  A report
# with a frame in wa_notify.so fails the run and is printed; reports about
# PostgreSQL's own code (not built for valgrind) are counted only.
#
#   sudo PG_CONFIG=/opt/pg-x/.../pg_config scripts/valgrind.sh
#   REGRESS="00_install webhook" PROVE_TESTS="test/t/201_*.pl" scripts/valgrind.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" = 0 ] || { echo "run as root (it installs the extension and runs the tests as postgres)" >&2; exit 1; }
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
command -v valgrind >/dev/null || { echo "valgrind not found (Debian: valgrind)" >&2; exit 1; }
bindir=$("$PG_CONFIG" --bindir)
REGRESS=${REGRESS:-00_install 01_configure capture render webhook}
PROVE_TESTS=${PROVE_TESTS:-test/t/111_*.pl test/t/201_*.pl test/t/206_*.pl test/t/300_*.pl}

make -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null

scratch=$(mktemp -d "${WA_TEST_TMP:-/var/tmp}/wa_notify_valgrind.XXXXXX")
tar --exclude=.git --exclude='tmp_check*' --exclude=results -cf - . | tar -C "$scratch" -xf -
mkdir "$scratch/vg"
chown -R postgres: "$scratch"
chmod 755 "$scratch"

[ -e "$bindir/postgres.real" ] && { echo "$bindir/postgres.real exists: a previous run did not finish" >&2; exit 1; }
mv "$bindir/postgres" "$bindir/postgres.real"
restore() { mv -f "$bindir/postgres.real" "$bindir/postgres"; }
trap restore EXIT
cat > "$bindir/postgres" <<WRAP
#!/bin/sh
# scripts/valgrind.sh: the postmaster under memcheck, everything else as is
case " \$* " in
  *" -V "*|*" --version "*|*" --boot "*|*" --single "*|*" -C "*|*" --describe-config "*)
    exec "$bindir/postgres.real" "\$@" ;;
esac
exec valgrind --quiet --tool=memcheck --trace-children=yes --leak-check=no \\
    --track-origins=no --num-callers=30 --error-limit=no \\
    --log-file="$scratch/vg/vg.%p" "$bindir/postgres.real" "\$@"
WRAP
chmod 755 "$bindir/postgres"

status=0
runuser -u postgres -- env PATH="$PATH" WA_CHURN_MESSAGES="${WA_CHURN_MESSAGES:-2000}" \
    PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-600}" \
    make -C "$scratch" -s installcheck PG_CONFIG="$PG_CONFIG" REGRESS="$REGRESS" PROVE_TESTS="$PROVE_TESTS" || status=$?

# one file per process; keep the error blocks, those touching wa_notify.so fail
ours=0
all=0
for f in "$scratch"/vg/vg.*; do
    [ -s "$f" ] || continue
    n=$(grep -c '^==[0-9]*== [A-Z].*\(Invalid\|uninitialised\|Mismatched\|overlap\|Jump\)' "$f" || true)
    all=$((all + n))
    if grep -q 'wa_notify.so' "$f"; then
        ours=$((ours + 1))
        echo "=== $f" >&2
        cat "$f" >&2
    fi
done
echo "valgrind: tests exit status $status; $all memcheck error(s) in all; $ours process log(s) with a wa_notify.so frame"
[ $ours -eq 0 ] || status=1
if [ $status -eq 0 ]; then rm -rf "$scratch"; else echo "test tree kept in $scratch" >&2; fi
exit $status
