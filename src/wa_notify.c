/*-------------------------------------------------------------------------
 * wa_notify.c
 *	  Module entry: _PG_init, GUCs, the shared-memory block's layout (one
 *	  slot per database worker: latch and facts), and the small
 *	  SQL-callable utilities that belong to no other concern (the random
 *	  verify token, the worker's shared facts).  The launcher, the slots'
 *	  life and the database workers' registration are launcher.c's; waking
 *	  the worker is wake.c's.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/guc.h"
#include "storage/spin.h"

#include <openssl/rand.h>

#include "wa_notify.h"

PG_MODULE_MAGIC;

char	   *wa_database = NULL;
int			wa_max_databases = 8;
WaShared   *wa_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

void		_PG_init(void);

static void
wa_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(wa_shared_size());
}

Size
wa_shared_size(void)
{
	return MAXALIGN(add_size(offsetof(WaShared, slots),
							 mul_size(sizeof(WaDbSlot), wa_max_databases)));
}

static void
wa_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	wa_shared = ShmemInitStruct("wa_notify", wa_shared_size(), &found);
	if (!found)
	{
		memset(wa_shared, 0, wa_shared_size());
		SpinLockInit(&wa_shared->mutex);
		wa_shared->probe_result = -1;
		pg_atomic_init_u64(&wa_shared->config_generation, 0);
		wa_shared->n_slots = wa_max_databases;
		for (int i = 0; i < wa_max_databases; i++)
		{
			WaDbSlot   *slot = &wa_shared->slots[i];

			slot->dboid = InvalidOid;
			pg_atomic_init_u64(&slot->wakeups, 0);
			pg_atomic_init_u64(&slot->wakes_seen, 0);
			pg_atomic_init_u64(&slot->worker_starts, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	/*
	 * A PGC_POSTMASTER variable can only be defined while preloading: when a
	 * session loads the library on its own (CREATE EXTENSION before the DBA
	 * added it to shared_preload_libraries), the SQL functions work and no
	 * worker runs (wa_notify.status says worker_running = false).
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("wa_notify.database",
								   "Databases the wa_notify launcher serves (comma-separated; empty: every database with the extension).",
								   "A database named here gets a worker even before CREATE EXTENSION, which waits for it.",
								   &wa_database,
								   "",
								   PGC_POSTMASTER,
								   GUC_LIST_INPUT,
								   NULL, NULL, NULL);
		DefineCustomIntVariable("wa_notify.max_databases",
								"Most databases served at once (one worker each).",
								"Databases beyond it are left unserved, with a WARNING naming them.",
								&wa_max_databases,
								8, 1, 256,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	}

	wa_worker_define_gucs();
	wa_secrets_init();

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("wa_notify");
#else
	EmitWarningsOnPlaceholders("wa_notify");
#endif

	if (!process_shared_preload_libraries_in_progress)
		return;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = wa_shmem_request;
#else
	wa_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = wa_shmem_startup;

	wa_launcher_init();
}

SPIPlanPtr
wa_prepare_kept(const char *sql, int nargs, Oid *types, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, cursor_options);

	if (plan == NULL)
		elog(ERROR, "wa_notify: SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * wa_notify._random_token(nbytes): hex of nbytes from OpenSSL's CSPRNG.
 * Used for the webhook verify token (generated at install, rotatable).
 */
PG_FUNCTION_INFO_V1(wa_notify_random_token);
Datum
wa_notify_random_token(PG_FUNCTION_ARGS)
{
	int32		nbytes = PG_GETARG_INT32(0);
	unsigned char buf[64];
	char		hex[129];
	static const char digits[] = "0123456789abcdef";

	if (nbytes < 16 || nbytes > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token length must be between 16 and 64 bytes")));
	if (RAND_bytes(buf, nbytes) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	for (int i = 0; i < nbytes; i++)
	{
		hex[2 * i] = digits[buf[i] >> 4];
		hex[2 * i + 1] = digits[buf[i] & 0xf];
	}
	hex[2 * nbytes] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

/*
 * wa_notify._worker_shared(): this database's worker's facts from shared
 * memory, for the status card and the tests (NULLs when the library is not
 * preloaded), and what the launcher says of this database's service.
 */
PG_FUNCTION_INFO_V1(wa_notify_worker_shared);
Datum
wa_notify_worker_shared(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {true, true, true, true, true, true};
	WaDbSlot   *slot;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (wa_shared == NULL)
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	slot = wa_db_slot(MyDatabaseId);
	if (slot != NULL)
	{
		values[0] = Int32GetDatum(slot->worker_pid);
		nulls[0] = slot->worker_pid == 0;
		values[1] = TimestampTzGetDatum(slot->worker_started_at);
		nulls[1] = nulls[0];
		values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->worker_starts));
		values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->wakeups));
		values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->wakes_seen));
		nulls[2] = nulls[3] = nulls[4] = false;
	}
	else
	{
		for (int i = 2; i < 5; i++)
		{
			values[i] = Int64GetDatum(0);
			nulls[i] = false;
		}
	}
	if (wa_db_unserved(MyDatabaseId))
	{
		values[5] = CStringGetTextDatum(psprintf("unserved: wa_notify.max_databases (%d) databases are served already",
												 wa_max_databases));
		nulls[5] = false;
	}
	else if (slot != NULL && slot->worker_pid != 0)
	{
		values[5] = CStringGetTextDatum("served");
		nulls[5] = false;
	}
	/* a column-list of 5 (1.1 before the launcher, the tests' pg_temp copy) reads 5 */
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
