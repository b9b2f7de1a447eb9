# wa_notify: WhatsApp order notifications from inside PostgreSQL.
#
#   make && make install          build and install the extension and the relay
#   make installcheck             pg_regress (temporary instance) + TAP tests
#
# The install script wa_notify--$(EXTVERSION).sql is assembled from the
# fragments in src/sql/ (one per concern, applied in name order).

EXTENSION   = wa_notify
EXTVERSION  = 1.0
MODULE_big  = wa_notify
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
SQL_PARTS   = $(sort $(wildcard src/sql/*.sql))

PG_CPPFLAGS = -std=gnu11 -I$(srcdir)/src
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

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

# The webhook relay: a small stand-alone program (libmicrohttpd + libpq).
all: $(RELAY)
$(RELAY): $(RELAY_SRCS) $(wildcard relay/*.h)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -I$(includedir) -o $@ $(RELAY_SRCS) \
	    -L$(libdir) -lmicrohttpd -lpq

install: install-relay
install-relay: $(RELAY)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(RELAY) '$(DESTDIR)$(bindir)/wa_notify_relay'

.PHONY: install-relay
