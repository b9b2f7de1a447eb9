/*-------------------------------------------------------------------------
 * settings.c
 *	  The typed settings snapshot: the one place C reads wa_notify.setting.
 *
 *	  Who owns what.  The rules of each setting (type, default, range,
 *	  pattern, hints) are data, columns of wa_notify.setting, declared once
 *	  in src/sql/1.1/10_config.sql and enforced by configure() there; the
 *	  PL/pgSQL side reads values through wa_notify._setting_value() and its
 *	  typed accessors.  This file owns the C side: one query loads every
 *	  setting by name (its value, else its row's default), each is parsed
 *	  once into a typed field of WaSettings (booleans with PostgreSQL's own
 *	  parse_bool(), as the SQL cast ::boolean does), and the worker, the
 *	  renderer, the webhook and the Graph GET all read that struct.  No
 *	  default is written here: a setting missing from the table is an error.
 *
 *	  Why one snapshot per transaction: the worker's cycle and claim, a
 *	  batch of renders and a webhook call each run in one transaction and
 *	  must see one consistent set of settings, read once.
 *
 *	  Why it is kept across transactions: a webhook call is a transaction
 *	  of its own, and reading the settings again for each one cost more
 *	  than the status it applies (issue 11).  So the snapshot lives until
 *	  the configuration changes, which is known from a counter in shared
 *	  memory (WaShared.config_generation): a transaction that wrote
 *	  wa_notify.setting, event or carrier (the statement trigger
 *	  _config_changed) bumps it when it writes, and again when it commits,
 *	  after its rows became visible (the first bump, for a backend that
 *	  its commit wakes before the second, wake.c; the second for one that
 *	  loaded in between); a backend's first call in a transaction compares the counter
 *	  with the value it read before loading its snapshot, and loads again
 *	  when they differ.  The load reads the counter first and then the
 *	  table with a fresh snapshot (GetLatestSnapshot, even in a REPEATABLE
 *	  READ transaction), so a change committed after the load always moves
 *	  the counter past the recorded value.  The writing backend drops its
 *	  own snapshot at once (the trigger), again when it commits or aborts,
 *	  and on a subtransaction abort; a relcache invalidation of
 *	  wa_notify.setting (the extension dropped and created again) drops it
 *	  too.  Without shared memory (the library not preloaded) the snapshot
 *	  is dropped at the end of every transaction.  A configuration change
 *	  in a prepared transaction bumps the counter at PREPARE, so a backend
 *	  that loads between PREPARE and COMMIT PREPARED keeps the older values
 *	  until the next change: configure() is not meant for two-phase commit.
 *
 *	  SQL entry point: the trigger function wa_notify_config_changed
 *	  (wa_notify._config_changed()).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stddef.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "storage/proc.h"

#include "wa_notify.h"
#include "settings.h"

typedef enum WaSettingKind
{
	WA_TEXT,
	WA_BOOL,
	WA_INT,
	WA_INT64,
	WA_FLOAT
} WaSettingKind;

typedef struct WaSettingField
{
	const char *name;
	WaSettingKind kind;
	size_t		offset;
} WaSettingField;

/*
 * Every setting but the secrets: those are read where they are used, from
 * the secrets file or their row, by secrets.c's wa_secret_get() (the one
 * home of that rule), and wiped after use; a snapshot never holds them.
 */
#define F(name, kind) {#name, kind, offsetof(WaSettings, name)}

static const WaSettingField fields[] = {
	F(phone_number_id, WA_TEXT),
	F(app_id, WA_TEXT),
	F(business_account_id, WA_TEXT),
	F(api_version, WA_TEXT),
	F(api_base_url, WA_TEXT),
	F(enabled, WA_BOOL),
	F(use_templates, WA_BOOL),
	F(allow_marketing_category, WA_BOOL),
	F(default_language, WA_TEXT),
	F(polling_interval, WA_INT),
	F(min_delay, WA_FLOAT),
	F(max_delay, WA_FLOAT),
	F(max_per_batch, WA_INT),
	F(lookback_days, WA_INT),
	F(max_rate, WA_FLOAT),
	F(max_in_flight, WA_INT),
	F(recipient_gap, WA_FLOAT),
	F(daily_recipient_limit, WA_INT),
	F(quiet_hours_start, WA_TEXT),
	F(quiet_hours_end, WA_TEXT),
	F(timezone, WA_TEXT),
	F(delivery_semantics, WA_TEXT),
	F(default_country_code, WA_TEXT),
	F(context_timeout, WA_INT),
	F(webhook_public_url, WA_TEXT),
	F(webhook_max_body, WA_INT64),
	F(opt_out_keywords, WA_TEXT),
	F(default_tracking_url, WA_TEXT),
	F(log_retention_days, WA_INT),
	F(anonymize_after_days, WA_INT),
	F(review_window, WA_INT),
	F(review_resend, WA_TEXT),
};

#undef F

static WaSettings snapshot;
static bool at_default[lengthof(fields)];	/* value unset, or equal to the default */
static bool snapshot_valid = false;
static uint64 generation = 1;	/* wa_settings_generation() */
static uint64 version = 0;		/* wa_settings_version(): loads so far */
static uint64 loaded_config_generation; /* the shared counter, read before
										 * the snapshot was loaded */
static bool changed_in_xact = false;	/* this transaction wrote the
										 * configuration tables */
static Oid	setting_relid = InvalidOid; /* wa_notify.setting, when loaded */
static MemoryContext snapshot_cxt = NULL;
static SPIPlanPtr load_plan = NULL;
static bool callbacks_registered = false;
static LocalTransactionId checked_lxid = InvalidLocalTransactionId;	/* the
																		 * transaction that last
																		 * used the snapshot */

/* Forget the snapshot. */
static void
drop_snapshot(void)
{
	snapshot_valid = false;
	generation++;
	if (snapshot_cxt != NULL)
		MemoryContextReset(snapshot_cxt);
}

/* the configuration is written: other backends load it again once this commits */
static void
publish_change(void)
{
	if (wa_shared != NULL)
		pg_atomic_fetch_add_u64(&wa_shared->config_generation, 1);
}

static void
settings_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			if (changed_in_xact)
				publish_change();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (changed_in_xact || wa_shared == NULL)
				drop_snapshot();
			else
				generation++;	/* a new transaction: render.c's caches go */
			changed_in_xact = false;
			break;
		default:
			break;
	}
}

static void
settings_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		drop_snapshot();
}

/* wa_notify.setting itself changed (dropped with the extension): load again */
static void
settings_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == setting_relid)
		drop_snapshot();
}

static const WaSettingField *
field_named(const char *name)
{
	for (size_t i = 0; i < lengthof(fields); i++)
		if (strcmp(fields[i].name, name) == 0)
			return &fields[i];
	return NULL;
}

static void
invalid_stored(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("setting \"%s\" holds an invalid value", name),
			 errdetail("The value was written to wa_notify.setting without configure()."),
			 errhint("Set it again with wa_notify.configure(), which checks it.")));
}

/* Parse one stored value (palloc'd in snapshot_cxt) into its field. */
static void
store_field(const WaSettingField *f, char *value)
{
	char	   *dst = (char *) &snapshot + f->offset;
	char	   *end = NULL;

	if (f->kind == WA_TEXT)
	{
		*(char **) dst = value;
		return;
	}
	if (value == NULL)
		invalid_stored(f->name);
	errno = 0;
	switch (f->kind)
	{
		case WA_BOOL:
			if (!parse_bool(value, (bool *) dst))
				invalid_stored(f->name);
			return;
		case WA_INT:
			{
				long		v = strtol(value, &end, 10);

				if (v < PG_INT32_MIN || v > PG_INT32_MAX)
					errno = ERANGE;
				*(int *) dst = (int) v;
				break;
			}
		case WA_INT64:
			*(int64 *) dst = strtoll(value, &end, 10);
			break;
		case WA_FLOAT:
			*(double *) dst = strtod(value, &end);
			break;
		case WA_TEXT:
			break;
	}
	if (errno != 0 || end == value || *end != '\0')
		invalid_stored(f->name);
}

static void
load_snapshot(void)
{
	bool		seen[lengthof(fields)] = {false};
	MemoryContext old;

	if (snapshot_cxt == NULL)
		snapshot_cxt = AllocSetContextCreate(TopMemoryContext, "wa_notify settings",
											 ALLOCSET_SMALL_SIZES);
	drop_snapshot();
	memset(&snapshot, 0, sizeof(snapshot));

	/* the counter first, then the rows with a snapshot taken after it */
	loaded_config_generation = wa_shared ? pg_atomic_read_u64(&wa_shared->config_generation) : 0;
	pg_memory_barrier();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "wa_notify: SPI_connect failed");
	if (load_plan == NULL)
		load_plan = wa_prepare_kept("SELECT name, coalesce(value, default_value), "
									"       value IS NULL OR value = default_value "
									"FROM wa_notify.setting WHERE NOT is_secret",
									0, NULL, 0);
	if (SPI_execute_snapshot(load_plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify: could not read wa_notify.setting");
	setting_relid = get_relname_relid("setting", get_namespace_oid("wa_notify", false));
	old = MemoryContextSwitchTo(snapshot_cxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		const WaSettingField *f = field_named(name);

		if (f == NULL)
			continue;			/* a setting no C code reads */
		store_field(f, SPI_getvalue(tup, SPI_tuptable->tupdesc, 2));
		{
			bool		isnull;

			at_default[f - fields] = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		}
		seen[f - fields] = true;
	}
	MemoryContextSwitchTo(old);
	SPI_finish();

	for (size_t i = 0; i < lengthof(fields); i++)
		if (!seen[i])
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("setting \"%s\" is missing from wa_notify.setting", fields[i].name),
					 errhint("Run ALTER EXTENSION wa_notify UPDATE, which creates it.")));
	snapshot_valid = true;
	checked_lxid = MyProc->lxid;
	version++;
}

/*
 * May this transaction use the snapshot loaded by an earlier one?  Only
 * while no configuration change committed since it was loaded.
 */
static bool
snapshot_current(void)
{
	if (!snapshot_valid)
		return false;
	if (checked_lxid == MyProc->lxid)
		return true;			/* one set of settings per transaction */
	if (wa_shared == NULL ||
		pg_atomic_read_u64(&wa_shared->config_generation) != loaded_config_generation)
		return false;
	checked_lxid = MyProc->lxid;
	return true;
}

/* once per backend, by the first reader or writer of the configuration */
static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(settings_xact_callback, NULL);
	RegisterSubXactCallback(settings_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(settings_relcache_callback, (Datum) 0);
	callbacks_registered = true;
}

const WaSettings *
wa_settings(void)
{
	register_callbacks();
	if (!snapshot_current())
		load_snapshot();
	return &snapshot;
}

/*
 * Is the setting at its default in the current snapshot (unset, or set to
 * the default's very text)?  Pacing defaults that follow a number's
 * throughput level ask (in_flight.c).
 */
bool
wa_setting_is_default(const char *name)
{
	const WaSettingField *f = field_named(name);

	(void) wa_settings();
	if (f == NULL)
		elog(ERROR, "wa_notify: no setting \"%s\" in the snapshot", name);
	return at_default[f - fields];
}

uint64
wa_settings_generation(void)
{
	return generation;
}

uint64
wa_settings_version(void)
{
	return snapshot_current() ? version : 0;
}

/*
 * wa_notify._config_changed(): statement trigger on the configuration
 * tables; the next read in this backend loads them again, and so does
 * every other backend's once this transaction commits.
 */
PG_FUNCTION_INFO_V1(wa_notify_config_changed);
Datum
wa_notify_config_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "wa_notify._config_changed() is a trigger function");
	register_callbacks();		/* the commit publishes the change */
	changed_in_xact = true;
	/* now too: a backend woken at commit (wake.c) must not keep the old values */
	publish_change();
	drop_snapshot();
	return PointerGetDatum(NULL);
}
