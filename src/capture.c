/*-------------------------------------------------------------------------
 * capture.c
 *	  Capture: the row trigger that watch() attaches to a shop's table, and
 *	  the C helpers watch() uses to validate a mapping.
 *
 *	  The trigger does the least it can in the shop's transaction: the
 *	  transition itself is decided by the trigger's WHEN clause (compiled by
 *	  PostgreSQL, so an UPDATE that does not fire costs nothing here) unless
 *	  fires_when holds a subquery; the trigger takes the order key (a column
 *	  of the row, or an expression run from a cached plan), and inserts one
 *	  wa_notify.message row (status queued, source_row = the row as jsonb,
 *	  resolved_at NULL) with ON CONFLICT DO NOTHING, then asks for the worker
 *	  to be woken at commit.  The context query runs after commit
 *	  (wa_notify._resolve_pending).
 *
 *	  Trigger arguments (written by wa_notify.watch, self-contained so that
 *	  a dumped trigger works after restore):
 *	    0  watch id
 *	    1  event
 *	    2  'k': the order key is column number arg 3 of the row
 *	       'e': arg 3 is a query ($1 new row, $2 old row or NULL) returning
 *	            the order key as text, or no row when the event does not fire
 *	    3  see 2
 *
 *	  Plans are prepared once per backend and watch (SPI_keepplan) and
 *	  re-prepared when the trigger's arguments change (watch() rewrites the
 *	  trigger, which invalidates the relation's cached trigger data).
 *
 *	  SQL: wa_notify._capture() (trigger), wa_notify._expr_info(),
 *	       wa_notify._context_columns().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "wa_notify.h"

typedef struct CaptureKey
{
	int64		watch_id;
	Oid			rowtype;		/* partitions of a watched table differ */
} CaptureKey;

typedef struct CaptureEntry
{
	CaptureKey	key;
	char	   *keysql;			/* 'e' mode query, TopMemoryContext; NULL in 'k' */
	SPIPlanPtr	keyplan;
	SPIPlanPtr	insplan;		/* queue row */
	SPIPlanPtr	failplan;		/* failed row: key NULL or key expression error */
} CaptureEntry;

static HTAB *capture_cache = NULL;

static void
capture_cache_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(CaptureKey);
	ctl.entrysize = sizeof(CaptureEntry);
	capture_cache = hash_create("wa_notify capture plans", 32, &ctl,
								HASH_ELEM | HASH_BLOBS);
}

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "wa_notify capture: SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

static CaptureEntry *
capture_entry(int64 watch_id, Oid rowtype, bool expr_mode, const char *keysql)
{
	CaptureKey	key;
	CaptureEntry *e;
	bool		found;

	if (capture_cache == NULL)
		capture_cache_init();
	memset(&key, 0, sizeof(key));
	key.watch_id = watch_id;
	key.rowtype = rowtype;
	e = hash_search(capture_cache, &key, HASH_ENTER, &found);
	if (found && e->insplan != NULL)
	{
		if ((!expr_mode && e->keysql == NULL) ||
			(expr_mode && e->keysql != NULL && strcmp(e->keysql, keysql) == 0))
			return e;
		/* the watch changed: forget the old plans */
		if (e->keyplan)
			SPI_freeplan(e->keyplan);
		if (e->keysql)
			pfree(e->keysql);
		e->keyplan = NULL;
		e->keysql = NULL;
	}
	else
	{
		e->keysql = NULL;
		e->keyplan = NULL;
		e->insplan = NULL;
		e->failplan = NULL;
	}

	if (e->insplan == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, INT8OID, rowtype};

		e->insplan = prepare_kept(
			"INSERT INTO wa_notify.message (event, order_key, watch_id, source_row)"
			" VALUES ($1, $2, $3, to_jsonb($4))"
			" ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL"
			" DO NOTHING", 4, types);
		e->failplan = prepare_kept(
			"INSERT INTO wa_notify.message (event, order_key, watch_id, source_row, status,"
			"  error_message, failed_at, resolved_at)"
			" VALUES ($1, NULL, $3, to_jsonb($4), 'failed', $2, now(), now())", 4, types);
	}
	if (expr_mode)
	{
		Oid			types[2] = {rowtype, rowtype};

		e->keyplan = prepare_kept(keysql, 2, types);
		e->keysql = MemoryContextStrdup(TopMemoryContext, keysql);
	}
	return e;
}

/*
 * Run the key query in a subtransaction (it writes nothing, so no xid is
 * spent): an error in the admin's expression (a subquery returning two rows,
 * a bad cast) must not roll back the shop's order.  Returns true when the
 * event fires; *key is the order key (NULL if the expression gave NULL) or
 * *error the expression's error.
 */
static bool
run_key_query(CaptureEntry *e, Datum newrow, Datum oldrow, bool has_old,
			  char **key, char **error)
{
	MemoryContext callerctx = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool fires = false;

	*key = NULL;
	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(callerctx);
	PG_TRY();
	{
		Datum		args[2];
		char		nulls[2] = {' ', ' '};
		int			rc;

		args[0] = newrow;
		args[1] = oldrow;
		if (!has_old)
			nulls[1] = 'n';
		rc = SPI_execute_plan(e->keyplan, args, nulls, false, 2);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "wa_notify capture: key query failed: %s", SPI_result_code_string(rc));
		if (SPI_processed > 1)
			ereport(ERROR,
					(errcode(ERRCODE_CARDINALITY_VIOLATION),
					 errmsg("the order key query returned more than one row")));
		if (SPI_processed == 1)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			fires = true;
			MemoryContextSwitchTo(callerctx);
			*key = v ? pstrdup(v) : NULL;
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callerctx);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(callerctx);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callerctx);
		CurrentResourceOwner = owner;
		*error = psprintf("the order key expression failed: %s", edata->message);
		FreeErrorData(edata);
		fires = true;
	}
	PG_END_TRY();
	return fires;
}

PG_FUNCTION_INFO_V1(wa_notify_capture);
Datum
wa_notify_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	newtup;
	HeapTuple	oldtup = NULL;
	int64		watch_id;
	bool		expr_mode;
	CaptureEntry *e;
	char	   *key = NULL;
	char	   *error = NULL;
	Datum		newrow;
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			rc;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._capture() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._capture() must be an AFTER ... FOR EACH ROW trigger")));
	tg = trigdata->tg_trigger;
	if (tg->tgnargs != 4)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._capture() needs four trigger arguments"),
				 errhint("Attach capture with wa_notify.watch().")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		oldtup = trigdata->tg_trigtuple;
		newtup = trigdata->tg_newtuple;
	}
	else
		newtup = trigdata->tg_trigtuple;

	watch_id = pg_strtoint64(tg->tgargs[0]);
	expr_mode = (tg->tgargs[2][0] == 'e');

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	e = capture_entry(watch_id, rel->rd_rel->reltype, expr_mode, tg->tgargs[3]);

	newrow = heap_copy_tuple_as_datum(newtup, desc);
	if (expr_mode)
	{
		Datum		oldrow = oldtup ? heap_copy_tuple_as_datum(oldtup, desc) : (Datum) 0;

		if (!run_key_query(e, newrow, oldrow, oldtup != NULL, &key, &error))
		{
			SPI_finish();
			return PointerGetDatum(NULL);
		}
	}
	else
	{
		int			attnum = pg_strtoint32(tg->tgargs[3]);

		if (attnum < 1 || attnum > desc->natts)
			error = psprintf("the order key column %d does not exist", attnum);
		else
			key = SPI_getvalue(newtup, desc, attnum);
	}
	if (key == NULL && error == NULL)
		error = pstrdup("the order key expression gave NULL for this row");

	args[0] = CStringGetTextDatum(tg->tgargs[1]);
	args[1] = CStringGetTextDatum(error ? error : key);
	args[2] = Int64GetDatum(watch_id);
	args[3] = newrow;
	rc = SPI_execute_plan(error ? e->failplan : e->insplan, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "wa_notify capture: enqueue failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		wa_wake_worker_at_commit();
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * Prepare "SELECT (expr) FROM ONLY source AS alias" and report errors as
 * "invalid <what>" with the parser's message as detail.
 */
static SPIPlanPtr
prepare_checked(const char *sql, int nargs, Oid *types, const char *what, const char *text)
{
	MemoryContext ctx = CurrentMemoryContext;
	SPIPlanPtr	plan = NULL;

	PG_TRY();
	{
		plan = SPI_prepare(sql, nargs, types);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(ctx);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode == ERRCODE_SYNTAX_ERROR ||
						 edata->sqlerrcode == ERRCODE_UNDEFINED_COLUMN ||
						 edata->sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
						 edata->sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
						 edata->sqlerrcode == ERRCODE_DATATYPE_MISMATCH ||
						 edata->sqlerrcode == ERRCODE_UNDEFINED_PARAMETER ?
						 edata->sqlerrcode : ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %s", what, edata->message),
				 errdetail("The %s was: %s", what, text)));
	}
	PG_END_TRY();
	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %s", what, SPI_result_code_string(SPI_result)),
				 errdetail("The %s was: %s", what, text)));
	return plan;
}

/*
 * wa_notify._expr_info(source regclass, expr text, what text,
 *     OUT type regtype, OUT has_sublink boolean, OUT expr text, OUT new_expr text,
 *     OUT old_expr text)
 *
 * Checks that expr parses as an expression over source (columns by name or
 * qualified by the table's name) and gives its type, whether it holds a
 * subquery (or a volatile function: then it cannot be a WHEN clause), its
 * text with columns qualified by the table's name, and, when it can be a
 * WHEN clause, its text over NEW and over OLD.  All texts are deparsed with
 * names schema-qualified.
 */
PG_FUNCTION_INFO_V1(wa_notify_expr_info);
Datum
wa_notify_expr_info(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *relname;
	char	   *nspname;
	char	   *sql;
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *ps;
	Query	   *q;
	TargetEntry *te;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	HeapTuple	result;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	nspname = get_namespace_name(get_rel_namespace(relid));

	sql = psprintf("SELECT (%s\n) FROM ONLY %s.%s AS %s", expr,
				   quote_identifier(nspname), quote_identifier(relname),
				   quote_identifier(relname));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = prepare_checked(sql, 0, NULL, what, expr);
	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: it must be a single expression", what),
				 errdetail("The %s was: %s", what, expr)));
	ps = (CachedPlanSource *) linitial(sources);
	if (ps->resultDesc == NULL || ps->resultDesc->natts != 1 ||
		list_length(ps->query_list) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: it must be a single expression", what),
				 errdetail("The %s was: %s", what, expr)));
	q = linitial_node(Query, ps->query_list);
	if (list_length(q->targetList) != 1 || q->groupClause || q->hasAggs ||
		q->hasWindowFuncs || q->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: it must be one value per row (no aggregate, window or set-returning function)", what),
				 errdetail("The %s was: %s", what, expr)));
	te = linitial_node(TargetEntry, q->targetList);

	values[0] = ObjectIdGetDatum(TupleDescAttr(ps->resultDesc, 0)->atttypid);
	values[1] = BoolGetDatum(q->hasSubLinks || contain_volatile_functions((Node *) te->expr));

	/*
	 * Deparse with only pg_catalog in the search path, so that every other
	 * name comes out schema-qualified: the text means the same whatever the
	 * search path of the session that later fires the trigger.
	 */
	{
		int			nestlevel = NewGUCNestLevel();

		(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		values[2] = CStringGetTextDatum(deparse_expression((Node *) te->expr,
														   deparse_context_for(relname, relid),
														   true, false));
		if (DatumGetBool(values[1]))
		{
			/* evaluated from a query in the trigger: no WHEN clause text */
			nulls[3] = nulls[4] = true;
		}
		else
		{
			values[3] = CStringGetTextDatum(deparse_expression((Node *) te->expr,
															   deparse_context_for("new", relid),
															   true, false));
			values[4] = CStringGetTextDatum(deparse_expression((Node *) te->expr,
															   deparse_context_for("old", relid),
															   true, false));
		}
		AtEOXact_GUC(true, nestlevel);
	}
	SPI_freeplan(plan);
	SPI_finish();
	result = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * wa_notify._context_columns(context text) RETURNS text[]: checks that the
 * context parses as one query with $1 text and $2 jsonb and returns rows;
 * gives the names of its columns.
 */
PG_FUNCTION_INFO_V1(wa_notify_context_columns);
Datum
wa_notify_context_columns(PG_FUNCTION_ARGS)
{
	char	   *ctx = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			types[2] = {TEXTOID, JSONBOID};
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *ps;
	Datum	   *names;
	int			n;
	ArrayType  *arr;
	MemoryContext callerctx = CurrentMemoryContext;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = prepare_checked(ctx, 2, types, "context query", ctx);
	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid context query: it must be a single SELECT"),
				 errdetail("The context query was: %s", ctx)));
	ps = (CachedPlanSource *) linitial(sources);
	if (ps->resultDesc == NULL || ps->commandTag != CMDTAG_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid context query: it must be a SELECT returning the order context"),
				 errdetail("The context query was: %s", ctx)));
	n = ps->resultDesc->natts;
	MemoryContextSwitchTo(callerctx);
	names = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		names[i] = CStringGetTextDatum(NameStr(TupleDescAttr(ps->resultDesc, i)->attname));
	arr = construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT);
	SPI_freeplan(plan);
	SPI_finish();
	PG_RETURN_ARRAYTYPE_P(arr);
}
