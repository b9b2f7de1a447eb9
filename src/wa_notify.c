/*-------------------------------------------------------------------------
 * wa_notify.c
 *	  Module entry: _PG_init, GUCs, the shared-memory block (the worker's
 *	  latch and facts), background worker registration, and the small
 *	  SQL-callable utilities that belong to no other concern (the random
 *	  verify token, the worker's shared facts).  Waking the worker is
 *	  wake.c's.
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

#include <openssl/rand.h>

#include "wa_notify.h"

PG_MODULE_MAGIC;

char	   *wa_database = NULL;
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
	RequestAddinShmemSpace(MAXALIGN(sizeof(WaShared)));
}

static void
wa_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	wa_shared = ShmemInitStruct("wa_notify", sizeof(WaShared), &found);
	if (!found)
	{
		wa_shared->worker_latch = NULL;
		wa_shared->worker_pid = 0;
		pg_atomic_init_u64(&wa_shared->wakeups, 0);
		pg_atomic_init_u64(&wa_shared->wakes_seen, 0);
		pg_atomic_init_u64(&wa_shared->worker_starts, 0);
		wa_shared->worker_started_at = 0;
		pg_atomic_init_u64(&wa_shared->config_generation, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	BackgroundWorker worker;

	/*
	 * A PGC_POSTMASTER variable can only be defined while preloading: when a
	 * session loads the library on its own (CREATE EXTENSION before the DBA
	 * added it to shared_preload_libraries), the SQL functions work and no
	 * worker runs (wa_notify.status says worker_running = false).
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("wa_notify.database",
								   "Database in which the wa_notify worker runs.",
								   "The extension must be created in this database; the worker idles until it is.",
								   &wa_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

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

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* started on a standby too: it idles there and serves after promotion */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "wa_notify");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "wa_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "wa_notify worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "wa_notify worker");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
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
 * wa_notify._worker_shared(): the worker's facts from shared memory, for the
 * status card and the tests (NULLs when the library is not preloaded).
 */
PG_FUNCTION_INFO_V1(wa_notify_worker_shared);
Datum
wa_notify_worker_shared(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (wa_shared == NULL)
	{
		for (int i = 0; i < 5; i++)
			nulls[i] = true;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}
	values[0] = Int32GetDatum(wa_shared->worker_pid);
	nulls[0] = wa_shared->worker_pid == 0;
	values[1] = TimestampTzGetDatum(wa_shared->worker_started_at);
	nulls[1] = nulls[0];
	values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&wa_shared->worker_starts));
	values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&wa_shared->wakeups));
	values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&wa_shared->wakes_seen));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
