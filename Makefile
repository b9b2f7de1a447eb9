# wa_notify: WhatsApp order notifications from inside PostgreSQL.
#
#   make && make install          build and install the extension and the relay
#   make installcheck             pg_regress (temporary instance) + TAP tests
#
# Versions: wa_notify--1.0.sql is the install script as released (frozen:
# never edit it).  Every schema change since goes into the update script
# wa_notify--1.0--1.1.sql, assembled from src/sql/1.1/*.sql (one fragment per
# concern, applied in name order).  There is no wa_notify--1.1.sql: a fresh
# CREATE EXTENSION runs 1.0 and then the update, so a fresh 1.1 and an
# upgraded 1.0 are built by the same statements.

EXTENSION   = wa_notify
EXTVERSION  = 1.1
MODULE_big  = wa_notify
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA        = $(EXTENSION)--1.0.sql
DATA_built  = $(EXTENSION)--1.0--1.1.sql
SQL_PARTS   = $(sort $(wildcard src/sql/1.1/*.sql))

# -Wno-unused-parameter: every fmgr function has an unused fcinfo somewhere.
WARNINGS    = -Wall -Wextra -Werror -Wno-unused-parameter
PG_CPPFLAGS = -std=gnu11 -I$(srcdir)/src $(WARNINGS) -DWA_EXTVERSION='"$(EXTVERSION)"'
SHLIB_LINK  = -lcurl -lcrypto -ljson-c

# pg_regress runs on its own throw-away instance, with the library preloaded.
REGRESS      = $(basename $(notdir $(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=$(srcdir)/test/regress.conf
TAP_TESTS    = 1
PROVE_TESTS  = test/t/*.pl


RELAY        = relay/wa_notify_relay
RELAY_SRCS   = $(sort $(wildcard relay/*.c))
EXTRA_CLEAN  = $(RELAY) tmp_check_regress test/fuzz/*.o

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# (the directory too: removing a fragment must rebuild the script)
$(EXTENSION)--1.0--1.1.sql: $(SQL_PARTS) src/sql/1.1
	cat $(SQL_PARTS) > $@.tmp
	@# one definition per function or view in the update (a second one in a
	@# later fragment would silently win over the first)
	@dups=$$(grep -ohE 'CREATE (OR REPLACE )?(FUNCTION|VIEW) wa_notify\.[a-z_0-9]+' $@.tmp \
	    | sed -E 's/CREATE (OR REPLACE )?//' | sort | uniq -d); \
	if [ -n "$$dups" ]; then echo "defined twice in src/sql/1.1: $$dups" >&2; rm -f $@.tmp; exit 1; fi
	mv $@.tmp $@

# The webhook relay: a small stand-alone program (libmicrohttpd + libpq).
all: $(RELAY)
$(RELAY): $(RELAY_SRCS) $(wildcard relay/*.h)
	$(CC) -std=gnu11 -O2 $(WARNINGS) -I$(includedir) -o $@ $(RELAY_SRCS) \
	    -L$(libdir) -lmicrohttpd -lpq

install: install-relay
install-relay: $(RELAY)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(RELAY) '$(DESTDIR)$(bindir)/wa_notify_relay'

.PHONY: install-relay

# The dispatcher, capture and webhook tests with the library built under
# AddressSanitizer, the runtime preloaded into the server (doc/development.md).
asan:
	PG_CONFIG=$(PG_CONFIG) bash scripts/asan.sh

.PHONY: asan

# The same tests with every server process under valgrind's memcheck.
valgrind:
	PG_CONFIG=$(PG_CONFIG) bash scripts/valgrind.sh

.PHONY: valgrind
