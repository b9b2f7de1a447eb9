#!/usr/bin/env bash
# Run the dispatcher, capture and webhook tests with every server process
# under valgrind's memcheck (make valgrind): the memory checker that needs
# no rebuild of PostgreSQL.  The postmaster of every test cluster starts
# under valgrind (--trace-children=yes: backends and the worker are its
# forks), through a wrapper that temporarily takes the place of
# $(bindir)/postgres -- so use a private installation (PG_CONFIG of a
# prefix of your own); initdb's bootstrap runs without valgrind.  An error
# with one of its first 8 frames in wa_notify's code fails the run and is
# printed; errors in PostgreSQL's own code (not built for valgrind) are
# counted only.  Tests that assert timing (gaps between requests) may fail
# under valgrind's slowdown: the memcheck verdict is the line it prints.
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

# One log per process.  An error counts as ours when one of its first 8
# stack frames is in wa_notify's code (its own frames, not the stacks of
# where the memory was allocated or freed), unless it is one of the writes
# of uninitialised padding that PostgreSQL's own src/tools/valgrind.supp
# suppresses (WAL, the relcache init file: the worker's commit is only the
# caller there).
ours=0
all=0
for f in "$scratch"/vg/vg.*; do
    [ -s "$f" ] || continue
    counts=$(awk '
        /^==[0-9]+== [A-Z]/ && !/^==[0-9]+== (Address|HEAP|Memcheck|Copyright|Using|Command)/ {
            inerr = 1; depth = 0; mine = 0; pgsupp = 0; all++; next }
        inerr && /^==[0-9]+==    (at|by) / {
            depth++
            if (depth <= 8 && $0 ~ /wa_notify\.so|\((capture|capture_priv|graph|graph_errors|phone|render|secrets|wa_notify|wake|webhook|webhook_parse|worker)\.c:[0-9]+\)/) mine = 1
            if ($0 ~ /XLogFlush|XLogWrite|XLogBackgroundFlush|RelationCacheInitializePhase3|write_relcache_init_file/) pgsupp = 1
            next }
        inerr { if (mine && !pgsupp) ours++; inerr = 0 }
        END { if (inerr && mine && !pgsupp) ours++; print all + 0, ours + 0 }' "$f")
    all=$((all + ${counts% *}))
    n=${counts#* }
    if [ "$n" -gt 0 ]; then
        ours=$((ours + n))
        echo "=== $f: $n error(s) in wa_notify's code" >&2
        cat "$f" >&2
    fi
done
echo "valgrind: tests exit status $status; $all memcheck error(s) in all; $ours in wa_notify's code"
[ $ours -eq 0 ] || status=1
if [ $status -eq 0 ]; then rm -rf "$scratch"; else echo "test tree kept in $scratch" >&2; fi
exit $status
