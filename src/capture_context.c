/*-------------------------------------------------------------------------
 * capture_context.c
 *	  Running admin-written context queries with least privilege and under
 *	  a time limit: the one place where a context (resolution by the worker,
 *	  preview(), watch()'s EXPLAIN check) is executed.
 *
 *	  A context runs
 *	  - as the role wa_notify_context (NOLOGIN, created by the update
 *	    script; it must be no superuser and have no USAGE on schema
 *	    wa_notify: both are checked before every run), inside a
 *	    security-restricted operation;
 *	  - with row_security = off (a table under a policy makes the context
 *	    fail: no policy function ever runs), search_path = pg_catalog, the
 *	    schemas recorded at watch() time, pg_temp; every GUC it changes is
 *	    rolled back;
 *	  - wrapped in fully schema-qualified SQL (pg_catalog.array_agg,
 *	    pg_catalog.to_jsonb), so no function of a shop schema can stand in;
 *	  - read-only (SPI read_only: a context cannot write or lock rows);
 *	  - under a timer of context_timeout seconds (a private timeout that
 *	    cancels the query: error WA004) and lock_timeout of the same length;
 *	  - in the worker, with SIGTERM handled like a backend's die(): a
 *	    shutdown or pg_terminate_backend() ends a running context at once
 *	    (FATAL, nothing recorded for that message; the postmaster's death
 *	    ends pg_sleep and lock waits by itself).
 *
 *	  SQL: wa_notify._context_exec(), wa_notify._context_explain().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "wa_notify.h"

#define WA_CONTEXT_ROLE "wa_notify_context"
#define ERRCODE_WA_CONTEXT_TIMEOUT MAKE_SQLSTATE('W','A','0','0','4')

static TimeoutId context_timer = MAX_TIMEOUTS;	/* not registered yet */
static volatile sig_atomic_t context_timed_out = false;

static void
context_timeout_handler(void)
{
	context_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * The oid of wa_notify_context, refused when it could reach more than a
 * context should: a superuser, or a role with USAGE on schema wa_notify
 * (granted, inherited, or through pg_read_all_data).
 */
static Oid
context_role(void)
{
	HeapTuple	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(WA_CONTEXT_ROLE));
	Form_pg_authid form;
	Oid			roleid;
	bool		super;
	Oid			nsp;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", WA_CONTEXT_ROLE),
				 errdetail("Context queries run as that role."),
				 errhint("Create it: CREATE ROLE %s NOLOGIN; then grant it SELECT on the shop tables the contexts read.",
						 WA_CONTEXT_ROLE)));
	form = (Form_pg_authid) GETSTRUCT(tup);
	roleid = form->oid;
	super = form->rolsuper;
	ReleaseSysCache(tup);
	if (super)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" must not be a superuser", WA_CONTEXT_ROLE),
				 errhint("ALTER ROLE %s NOSUPERUSER;", WA_CONTEXT_ROLE)));
	nsp = get_namespace_oid("wa_notify", false);
	if (pg_namespace_aclcheck(nsp, roleid, ACL_USAGE) == ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" must have no right on schema wa_notify", WA_CONTEXT_ROLE),
				 errdetail("Contexts run as that role; with USAGE on wa_notify a context could reach the extension's objects."),
				 errhint("REVOKE USAGE ON SCHEMA wa_notify FROM %s; and revoke the roles that grant it (pg_read_all_data included).",
						 WA_CONTEXT_ROLE)));
	return roleid;
}

/* the search path of a context: pg_catalog first, pg_temp last */
static char *
context_search_path(const char *recorded)
{
	if (recorded == NULL || recorded[0] == '\0')
		return pstrdup("pg_catalog, pg_temp");
	return psprintf("pg_catalog, %s, pg_temp", recorded);
}

/*
 * Run sql ($1 text, $2 jsonb) as wa_notify_context under the rules above.
 * Returns the first column of the first row (NULL: *isnull), copied out of
 * SPI; utility statements (EXPLAIN) return nothing.
 */
static Datum
run_as_context_role(const char *recorded_path, const char *sql, Datum *values,
					const char *nulls, int timeout_arg, bool read_only, bool *isnull)
{
	const int	timeout_s = Max(timeout_arg, 1);
	Oid			roleid = context_role();
	Oid			types[2] = {TEXTOID, JSONBOID};
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	char		ms[32];
	volatile pqsigfunc prev_sigterm = NULL;
	MemoryContext callerctx = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	*isnull = true;
	snprintf(ms, sizeof(ms), "%d", timeout_s * 1000);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", context_search_path(recorded_path),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("row_security", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("lock_timeout", ms, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(roleid,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);

	if (wa_am_worker)
	{
		/* a shutdown asked for before this context: honour it now */
		if (ShutdownRequestPending)
		{
			ProcDiePending = true;
			InterruptPending = true;
			CHECK_FOR_INTERRUPTS();
		}
		prev_sigterm = pqsignal(SIGTERM, die);
	}
	if (context_timer == MAX_TIMEOUTS)
		context_timer = RegisterTimeout(USER_TIMEOUT, context_timeout_handler);
	context_timed_out = false;
	enable_timeout_after(context_timer, timeout_s * 1000);

	PG_TRY();
	{
		int			rc;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute_with_args(sql, 2, types, values, nulls, read_only, 1);
		if (rc < 0)
			elog(ERROR, "context query: unexpected result %s", SPI_result_code_string(rc));
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
			if (!*isnull)
				result = SPI_datumTransfer(result, false, -1);
		}
		SPI_finish();
	}
	PG_CATCH();
	{
		bool		timed_out = context_timed_out;

		disable_timeout(context_timer, false);
		context_timed_out = false;
		if (wa_am_worker)
			pqsignal(SIGTERM, prev_sigterm);
		if (timed_out)
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(callerctx);
			edata = CopyErrorData();
			if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			{
				FlushErrorState();
				ereport(ERROR,
						(errcode(ERRCODE_WA_CONTEXT_TIMEOUT),
						 errmsg("context query did not finish within %d s", timeout_s),
						 errhint("The limit is the setting context_timeout (1 to 300 seconds).")));
			}
		}
		PG_RE_THROW();
	}
	PG_END_TRY();

	disable_timeout(context_timer, false);
	if (context_timed_out)
	{
		/* the timer fired as the query ended: no cancel for what follows */
		context_timed_out = false;
		QueryCancelPending = false;
	}
	if (wa_am_worker)
		pqsignal(SIGTERM, prev_sigterm);
	SetUserIdAndSecContext(save_userid, save_sec);
	/* roll back every GUC the context changed, SET as well as SET LOCAL */
	AtEOXact_GUC(false, nestlevel);
	return result;
}

/*
 * wa_notify._context_exec(search_path text, context text, order_key text,
 *     source_row jsonb, timeout integer) RETURNS jsonb[]
 *
 * At most two rows of the context query ($1 order key, $2 source row), each
 * as jsonb; NULL for none.
 */
PG_FUNCTION_INFO_V1(wa_notify_context_exec);
Datum
wa_notify_context_exec(PG_FUNCTION_ARGS)
{
	char	   *path;
	char	   *sql;
	Datum		values[2];
	char		nulls[2];
	Datum		result;
	bool		isnull;

	if (PG_NARGS() != 5 || PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("search_path, context and timeout must not be NULL")));
	path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	sql = psprintf("SELECT pg_catalog.array_agg(pg_catalog.to_jsonb(c)) "
				   "FROM (SELECT * FROM (%s\n) c LIMIT 2) c",
				   text_to_cstring(PG_GETARG_TEXT_PP(1)));
	values[0] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[0] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[1] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[1] = PG_ARGISNULL(3) ? 'n' : ' ';

	result = run_as_context_role(path, sql, values, nulls, PG_GETARG_INT32(4), true, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * wa_notify._context_explain(search_path text, context text, timeout
 * integer) RETURNS void: EXPLAIN the context as wa_notify_context (the
 * executor's permission checks, row security included, without running
 * it).  watch() turns a permission error into the GRANT that is missing.
 */
PG_FUNCTION_INFO_V1(wa_notify_context_explain);
Datum
wa_notify_context_explain(PG_FUNCTION_ARGS)
{
	Datum		values[2] = {(Datum) 0, (Datum) 0};
	char		nulls[2] = {'n', 'n'};
	bool		isnull;
	char	   *sql = psprintf("EXPLAIN (COSTS OFF) %s", text_to_cstring(PG_GETARG_TEXT_PP(1)));

	(void) run_as_context_role(text_to_cstring(PG_GETARG_TEXT_PP(0)), sql, values, nulls,
							   PG_GETARG_INT32(2), false, &isnull);
	PG_RETURN_VOID();
}
