/*-------------------------------------------------------------------------
 * capture.c
 *	  Capture: the trigger that watch() attaches to a shop's table, and
 *	  the C helpers watch() uses to validate a mapping.
 *
 *	  One trigger per table and event kind (wa_notify_capture_ins, AFTER
 *	  INSERT, every watch of the table; wa_notify_capture_upd, AFTER UPDATE,
 *	  the watches with a fires_when).  On a table of its own it is FOR EACH
 *	  STATEMENT with its transition tables: one call per statement reads
 *	  every row (an UPDATE's old and new tables in step), with no trigger
 *	  event and no re-fetch per row; on a partitioned or inheritance table
 *	  it is FOR EACH ROW (cloned to the partitions), one trigger event per
 *	  row however many watches.  An UPDATE that set none of the columns a
 *	  watch's fires_when reads skips the watch (unless a BEFORE UPDATE
 *	  trigger may have changed others), and a call where no watch may fire
 *	  reads nothing.  The trigger does the least it
 *	  can in the shop's transaction, and nothing it does can fail the
 *	  shop's statement but PostgreSQL's own resource errors.  For each
 *	  watch it decides the transition itself: fires_when compiled in C
 *	  (capture_expr.c) and evaluated on the trigger's own slots, so only the
 *	  columns it reads are deformed and no whole-row value is built; an
 *	  UPDATE looks at the old row only when the new one holds; a watch that
 *	  does not fire costs nothing more.  The trigger has no WHEN clause and
 *	  names no column, so the shop's DDL is never blocked.  A fires_when
 *	  that may raise runs in a subtransaction, one proven unable to raise
 *	  directly.  Then it takes the order key (a column of the row, or an
 *	  expression run from a cached plan, prepared and run in a
 *	  subtransaction), and stages one row (watch, event, order key, as
 *	  much of the row as jsonb as the context reads of $2, or the error)
 *	  for the index-less staging table wa_notify.capture_queue; a call's
 *	  rows are written together at its end (heap_multi_insert, no
 *	  executor, no SPI, no privilege on wa_notify needed by the shop's
 *	  role), and the worker is woken at commit.  A
 *	  damaged staging table (index, trigger, changed columns) stages
 *	  nothing: a WARNING, and the shop's write goes on.  After commit,
 *	  wa_notify._resolve_pending moves staged rows into wa_notify.message
 *	  (ON CONFLICT DO NOTHING: one message per event and order) and runs
 *	  the context query.
 *
 *	  Trigger arguments (written by wa_notify.watch, self-contained so that
 *	  a dumped trigger works after restore), eight per watch, in watch id
 *	  order:
 *	    0  watch id
 *	    1  event
 *	    2  'k': the order key is the column named by arg 3 (quoted)
 *	       'e': arg 3 is a query ($1 new row, $2 old row or NULL) returning
 *	            the order key as text, or no row when the event does not fire
 *	    3  see 2
 *	    4  what of the row to stage as source_row ($2 of the context):
 *	       '-' nothing (the context does not read $2), 'j' the row as jsonb,
 *	       'cstatus,"Id"' only these columns (quoted names) as a jsonb
 *	       object of their text (the context reads only $2->>'column' of
 *	       types whose text is the same either way; watch() decides)
 *	    5  fires_when as the admin wrote it ('' none)
 *	    6  the schemas recorded at watch() time (its search path)
 *	    7  the alias fires_when and the key use for the table
 *	  A 1.0 trigger (one watch, arguments 0-4, fires_when in a WHEN clause
 *	  that names columns) keeps working until the update script merges it.
 *
 *	  Per backend, each trigger's arguments are parsed once (key columns
 *	  and their output functions resolved, fires_when compiled), and the
 *	  staging table found and checked once; both are forgotten at a
 *	  relcache invalidation of their table (a column renamed or retyped, a
 *	  trigger or index created or dropped).  Key plans are prepared once
 *	  per backend and watch (SPI_keepplan) and re-prepared when the
 *	  trigger's arguments change.
 *
 *	  SQL: wa_notify._capture() (trigger), wa_notify._expr_info(),
 *	       wa_notify._context_columns(), wa_notify._capture_queue_damage().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "access/transam.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/tuplestore.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "access/table.h"
#include "storage/proc.h"
#include "catalog/namespace.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "utils/fmgroids.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/varlena.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "wa_notify.h"

/*
 * The largest row (columns' uncompressed sizes) staged whole as $2 of a
 * context ('j'):
 * a bigger one gives a failed message, never a failed jsonb conversion in
 * the shop's statement (jsonb's own limit is 256 MB).
 */
#define WA_MAX_STAGED_ROW (16 * 1024 * 1024)

/*
 * wa_notify.capture_queue, found once per backend and checked once for
 * damage; both forgotten at its relcache invalidation (any DDL on it).
 */
static Oid	queue_relid = InvalidOid;
static bool queue_checked = false;	/* queue_damage is current */
static const char *queue_damage = NULL;
/* the (sub)transaction that holds its RowExclusiveLock */
static LocalTransactionId queue_locked_lxid = InvalidLocalTransactionId;
static SubTransactionId queue_locked_subxid = InvalidSubTransactionId;

/* the key query of an 'e' watch, planned once per backend, watch and row type */
typedef struct CaptureKey
{
	int64		watch_id;
	Oid			rowtype;		/* partitions of a watched table differ */
} CaptureKey;

typedef struct CaptureEntry
{
	CaptureKey	key;
	char	   *keysql;			/* TopMemoryContext */
	SPIPlanPtr	keyplan;		/* prepared on first use */
	bool		valid;
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

static CaptureEntry *
capture_entry(int64 watch_id, Oid rowtype, const char *keysql)
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
	if (found && e->valid)
	{
		if (strcmp(e->keysql, keysql) == 0)
			return e;
		/* the watch changed: forget the old plan */
		if (e->keyplan)
			SPI_freeplan(e->keyplan);
		pfree(e->keysql);
	}
	e->keyplan = NULL;
	e->keysql = MemoryContextStrdup(TopMemoryContext, keysql);
	e->valid = true;
	return e;
}

/*
 * The attribute number of a column named in a trigger argument (quoted as
 * quote_ident does), looked up in this relation's descriptor: the
 * partitions of a watched table may order their columns differently.
 * 0 when there is no such column.
 */
static int
column_number(TupleDesc desc, char *quoted)
{
	List	   *names;
	int			attnum = 0;

	if (SplitIdentifierString(quoted, ',', &names) && list_length(names) == 1)
	{
		const char *name = (const char *) linitial(names);

		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			{
				attnum = i + 1;
				break;
			}
		}
	}
	return attnum;
}

/*
 * {"column": "text of the value", ...} for the listed columns (quoted
 * names separated by commas): what $2->>'column' reads, without converting
 * the whole row.
 */
static Datum
columns_as_jsonb(HeapTuple tup, TupleDesc desc, const char *columns)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	List	   *names = NIL;
	ListCell   *lc;

	if (!SplitIdentifierString(pstrdup(columns), ',', &names))
		names = NIL;
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		Form_pg_attribute att = NULL;
		int			attnum = 0;
		JsonbValue	k;
		JsonbValue	v;
		bool		isnull;
		Datum		d;

		for (int i = 0; i < desc->natts; i++)
		{
			if (!TupleDescAttr(desc, i)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(desc, i)->attname), name) == 0)
			{
				attnum = i + 1;
				att = TupleDescAttr(desc, i);
				break;
			}
		}
		if (attnum == 0)
			continue;
		k.type = jbvString;
		k.val.string.val = NameStr(att->attname);
		k.val.string.len = strlen(NameStr(att->attname));
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		d = heap_getattr(tup, attnum, desc, &isnull);
		if (isnull)
			v.type = jbvNull;
		else
		{
			Oid			typoutput;
			bool		typisvarlena;
			char	   *str;

			getTypeOutputInfo(att->atttypid, &typoutput, &typisvarlena);
			str = OidOutputFunctionCall(typoutput, d);
			v.type = jbvString;
			v.val.string.val = str;
			v.val.string.len = strlen(str);
		}
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/*
 * Why wa_notify.capture_queue cannot take a direct heap insert (NULL: it
 * can): the trigger appends to it without executor, so an index (even one
 * dropped since: the relcache's list, not relhasindex), a trigger or a
 * changed column would be bypassed or corrupted.
 */
static const char *
capture_queue_damage(Relation rel)
{
	static const struct
	{
		const char *name;
		Oid			type;
	}			expected[] =
	{
		{"watch_id", INT8OID}, {"event", TEXTOID}, {"order_key", TEXTOID},
		{"source_row", JSONBOID}, {"error", TEXTOID}, {"captured_at", TIMESTAMPTZOID}
	};
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes = RelationGetIndexList(rel);

	if (indexes != NIL)
	{
		list_free(indexes);
		return "wa_notify.capture_queue has an index";
	}
	if (rel->trigdesc != NULL)
		return "wa_notify.capture_queue has a trigger";
	if (rel->rd_rel->relhasrules || rel->rd_rel->relrowsecurity)
		return "wa_notify.capture_queue has a rule or row security";
	if (desc->natts != lengthof(expected))
		return "wa_notify.capture_queue's columns were changed";
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != expected[i].type ||
			strcmp(NameStr(att->attname), expected[i].name) != 0)
			return "wa_notify.capture_queue's columns were changed";
	}
	return NULL;
}

static Oid
capture_queue_relid(void)
{
	Oid			nsp = get_namespace_oid("wa_notify", true);

	return OidIsValid(nsp) ? get_relname_relid("capture_queue", nsp) : InvalidOid;
}

/*
 * wa_notify._capture_queue_damage() RETURNS text: why captures cannot be
 * staged (NULL: they can); the status card shows it.
 */
PG_FUNCTION_INFO_V1(wa_notify_capture_queue_damage);
Datum
wa_notify_capture_queue_damage(PG_FUNCTION_ARGS)
{
	Oid			relid = capture_queue_relid();
	Relation	rel;
	const char *damage;

	if (!OidIsValid(relid))
		PG_RETURN_TEXT_P(cstring_to_text("wa_notify.capture_queue does not exist"));
	rel = table_open(relid, AccessShareLock);
	damage = capture_queue_damage(rel);
	table_close(rel, AccessShareLock);
	if (damage == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(damage));
}

/*
 * The rows one call of the trigger stages (every row of a statement-level
 * call, one row's watches for a row-level one), written together when the
 * call ends (heap_multi_insert: one WAL record and one buffer lookup per
 * page, not per row), or every WA_STAGE_BATCH rows.  The table is opened
 * and checked at the first row and stays open for the call.
 */
#define WA_STAGE_BATCH 1000

typedef struct StageBatch
{
	MemoryContext cxt;			/* the call's: the tuples outlive each row */
	Relation	rel;			/* NULL until the first row is staged */
	HeapTuple	tuples[WA_STAGE_BATCH];
	int			ntuples;
} StageBatch;

static StageBatch *stage_batch = NULL;	/* the running call's */

/*
 * wa_notify.capture_queue, opened and locked (once per (sub)transaction: a
 * lock is held until its end) and checked; NULL and a WARNING when it is
 * missing or damaged: nothing can be staged, and the shop's write goes on.
 */
static Relation
open_capture_queue(const char *event)
{
	Relation	rel;

	if (!OidIsValid(queue_relid))
	{
		queue_relid = capture_queue_relid();
		queue_checked = false;
	}
	if (!OidIsValid(queue_relid))
	{
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("wa_notify could not capture %s: wa_notify.capture_queue does not exist", event),
				 errhint("Is the wa_notify extension installed in this database?")));
		return NULL;
	}
	if (queue_locked_lxid == MyProc->lxid && queue_locked_subxid == GetCurrentSubTransactionId())
		rel = table_open(queue_relid, NoLock);
	else
	{
		rel = table_open(queue_relid, RowExclusiveLock);
		queue_locked_lxid = MyProc->lxid;
		queue_locked_subxid = GetCurrentSubTransactionId();
	}
	/* the damage changes only with DDL on the table: its relcache invalidation */
	if (!queue_checked)
	{
		queue_damage = capture_queue_damage(rel);
		queue_checked = true;
	}
	if (queue_damage)
	{
		/* the lock stays until the (sub)transaction ends, as recorded above */
		table_close(rel, NoLock);
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("wa_notify could not capture %s: %s", event, queue_damage),
				 errdetail("The shop's write goes on; this capture is lost."),
				 errhint("wa_notify.capture_queue must have its six columns and no index, trigger, rule or policy; the status card shows the damage.")));
		return NULL;
	}
	return rel;
}

/*
 * Write the batch's rows.  The table has no index, no trigger and no
 * constraint beyond NOT NULL, so a heap insert is all an INSERT would do;
 * the rows are WAL-logged and roll back with the shop's transaction like
 * any other row.
 */
static void
multi_insert(Relation rel, TupleTableSlot **slots, HeapTuple *tuples, int ntuples)
{
	/* the slots own the batch's tuples until they are written */
	for (int i = 0; i < ntuples; i++)
		ExecStoreHeapTuple(tuples[i], slots[i], true);
	PG_TRY();
	{
		heap_multi_insert(rel, slots, ntuples, GetCurrentCommandId(true), 0, NULL);
	}
	PG_FINALLY();
	{
		/* never left holding a tuple of a call's memory */
		for (int i = 0; i < ntuples; i++)
			ExecClearTuple(slots[i]);
	}
	PG_END_TRY();
}

static void
flush_stage_batch(StageBatch *b)
{
	/* heap_multi_insert's slots, made once per backend (no descriptor pin per row) */
	static TupleTableSlot *slots[WA_STAGE_BATCH];
	static int	nslots = 0;

	if (b->ntuples == 0)
		return;
	if (b->ntuples == 1)
		simple_heap_insert(b->rel, b->tuples[0]);
	else
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		while (nslots < b->ntuples)
		{
			static TupleDesc desc = NULL;

			if (desc == NULL)
				desc = CreateTupleDescCopy(RelationGetDescr(b->rel));
			slots[nslots++] = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		}
		MemoryContextSwitchTo(old);
		multi_insert(b->rel, slots, b->tuples, b->ntuples);
	}
	b->ntuples = 0;
	wa_wake_worker_at_commit();
}

/* stage one capture: a row of wa_notify.capture_queue, written with the batch */
static void
stage_capture(int64 watch_id, const char *event, Datum event_text, const char *key, Datum source_row,
			  bool has_row, const char *error)
{
	StageBatch *b = stage_batch;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	MemoryContext old;

	if (b->rel == NULL && (b->rel = open_capture_queue(event)) == NULL)
		return;
	values[0] = Int64GetDatum(watch_id);
	values[1] = event_text;
	if (key)
		values[2] = CStringGetTextDatum(key);
	else
		nulls[2] = true;
	values[3] = source_row;
	nulls[3] = !has_row;
	if (error)
		values[4] = CStringGetTextDatum(error);
	else
		nulls[4] = true;
	values[5] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	old = MemoryContextSwitchTo(b->cxt);
	b->tuples[b->ntuples++] = heap_form_tuple(RelationGetDescr(b->rel), values, nulls);
	MemoryContextSwitchTo(old);
	if (b->ntuples == WA_STAGE_BATCH)
		flush_stage_batch(b);
}

typedef struct KeyQuery
{
	CaptureEntry *e;
	Datum		args[2];
	char		nulls[2];
	bool		fires;
	char	   *key;
	MemoryContext callerctx;
} KeyQuery;

/*
 * The key query ('e' mode), prepared on first use (a column renamed since
 * watch() fails here, not outside the protection) and run; it writes
 * nothing, so its subtransaction spends no xid.
 */
static void
key_query(void *arg)
{
	KeyQuery   *kq = (KeyQuery *) arg;
	CaptureEntry *e = kq->e;
	Oid			types[2] = {e->key.rowtype, e->key.rowtype};
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (e->keyplan == NULL)
		e->keyplan = wa_prepare_kept(e->keysql, 2, types, 0);
	rc = SPI_execute_plan(e->keyplan, kq->args, kq->nulls, false, 2);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "wa_notify capture: key query failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("the order key query returned more than one row")));
	if (SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		kq->fires = true;
		kq->key = v ? MemoryContextStrdup(kq->callerctx, v) : NULL;
	}
	SPI_finish();
}

/*
 * Run the key query protected: an error in the admin's expression (a
 * subquery returning two rows, a bad cast, a renamed column) must not roll
 * back the shop's order.  Returns true when the event fires; *key is the
 * order key (NULL if the expression gave NULL) or *error the error.
 */
static bool
run_key_query(CaptureEntry *e, Datum newrow, Datum oldrow, bool has_old,
			  char **key, char **error)
{
	KeyQuery	kq;
	char	   *err;

	kq.e = e;
	kq.args[0] = newrow;
	kq.args[1] = oldrow;
	kq.nulls[0] = ' ';
	kq.nulls[1] = has_old ? ' ' : 'n';
	kq.fires = false;
	kq.key = NULL;
	kq.callerctx = CurrentMemoryContext;
	*key = NULL;
	*error = NULL;
	if (!wa_run_protected(key_query, &kq, &err))
	{
		*error = psprintf("the order key expression failed: %s", err);
		return true;
	}
	*key = kq.key;
	return kq.fires;
}

/*
 * Can the row be converted to jsonb without any chance of an error?  Only
 * built-in types (and enums, domains and arrays of them) under the size
 * wa_notify stages; any other row is converted protected.
 */
static bool
row_converts_safely(HeapTuple tup, TupleDesc desc, Size *rawsize)
{
	bool		safe = true;

	*rawsize = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			base;
		bool		isnull;
		Datum		d;

		if (att->attisdropped)
			continue;
		base = getBaseType(att->atttypid);
		if (OidIsValid(get_element_type(base)))
			base = getBaseType(get_element_type(base));
		if (base >= FirstNormalObjectId && !type_is_enum(base))
			safe = false;
		if (att->attlen == -1)
		{
			d = heap_getattr(tup, i + 1, desc, &isnull);
			if (!isnull)
				*rawsize += toast_raw_datum_size(d);
		}
		else if (att->attlen > 0)
			*rawsize += att->attlen;
	}
	return safe;
}

typedef struct RowToJsonb
{
	FmgrInfo   *to_jsonb;
	Datum		row;
	Datum		result;
} RowToJsonb;

static void
row_to_jsonb(void *arg)
{
	RowToJsonb *r = (RowToJsonb *) arg;

	r->result = FunctionCall1(r->to_jsonb, r->row);
}

/* the row as jsonb ($2 of the context), or *error */
static Datum
staged_row(FmgrInfo *to_jsonb, HeapTuple tup, TupleDesc desc, Datum newrow, const char *keep,
		   char **error)
{
	Size		rawsize;
	bool		safe;
	RowToJsonb	r;
	char	   *err;

	/* only the listed columns, of types whose text cannot fail */
	if (keep[0] == 'c')
		return columns_as_jsonb(tup, desc, keep + 1);
	safe = row_converts_safely(tup, desc, &rawsize);
	if (rawsize > WA_MAX_STAGED_ROW)
	{
		*error = psprintf("the row is %zu bytes, over the %d bytes wa_notify stages for a context",
						  rawsize, WA_MAX_STAGED_ROW);
		return (Datum) 0;
	}
	r.to_jsonb = to_jsonb;
	r.row = newrow;
	r.result = (Datum) 0;
	if (safe)
		row_to_jsonb(&r);
	else if (!wa_run_protected(row_to_jsonb, &r, &err))
		*error = psprintf("the row could not be converted to jsonb: %s", err);
	return r.result;
}

/*
 * One watch of a capture trigger, as read from the trigger's arguments and
 * resolved against the trigger's relation.
 */
typedef struct CaptureWatch
{
	int64		watch_id;
	char	   *event;
	Datum		event_text;		/* the same as text, staged with every capture */
	bool		key_is_query;	/* 'e': key is a query; 'k': a quoted column */
	char	   *key;
	char	   *keep;			/* what of the row to stage: '-', 'j', 'c<columns>' */
	char	   *fires_when;		/* '' none (or decided by a 1.0 WHEN clause) */
	char	   *path;			/* the schemas recorded at watch() time */
	char	   *alias;			/* the name fires_when and the key use for the table */
	AttrNumber	key_attnum;		/* 'k': the column in this relation, 0: gone */
	FmgrInfo	key_output;		/* its type's output function */
	WaFiresWhen *fw;			/* compiled fires_when (capture_expr.c's cache) */
} CaptureWatch;

/*
 * A capture trigger of one relation, its arguments parsed once per backend:
 * 1.1 attaches one trigger per table and event kind (INSERT, UPDATE)
 * holding every watch of the table (eight arguments each, in watch id
 * order), so a row costs one trigger event however many watches the table
 * has.  Invalidated with the relation's relcache entry (a column renamed,
 * a type changed, a trigger dropped or created).
 */
typedef struct CaptureGroup
{
	Oid			tgoid;			/* hash key: the trigger */
	Oid			relid;
	bool		valid;
	int			busy;			/* calls running (a key query may fire it again) */
	MemoryContext cxt;			/* everything below */
	int			nwatches;
	CaptureWatch *watches;
	char	   *relname;		/* schema-qualified, for error texts */
	FmgrInfo	to_jsonb;		/* to_jsonb() of the relation's row type */
	TupleTableSlot *newslot;	/* a statement-level call's, made at its first call */
	TupleTableSlot *oldslot;
} CaptureGroup;

static HTAB *group_cache = NULL;

static void
capture_relcache_cb(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	CaptureGroup *g;

	if (!OidIsValid(relid) || relid == queue_relid)
	{
		queue_relid = InvalidOid;
		queue_checked = false;
	}
	hash_seq_init(&seq, group_cache);
	while ((g = hash_seq_search(&seq)) != NULL)
		if (!OidIsValid(relid) || g->relid == relid)
			g->valid = false;
}

static void
group_cache_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(CaptureGroup);
	group_cache = hash_create("wa_notify capture triggers", 32, &ctl, HASH_ELEM | HASH_BLOBS);
	CacheRegisterRelcacheCallback(capture_relcache_cb, (Datum) 0);
}

/* a watch's key column and its output function, in this relation */
static void
resolve_key_column(CaptureWatch *w, TupleDesc desc)
{
	w->key_attnum = column_number(desc, pstrdup(w->key));
	if (w->key_attnum > 0)
	{
		Oid			typoutput;
		bool		typisvarlena;

		getTypeOutputInfo(TupleDescAttr(desc, w->key_attnum - 1)->atttypid,
						  &typoutput, &typisvarlena);
		fmgr_info_cxt(typoutput, &w->key_output, CurrentMemoryContext);
	}
}

/*
 * The parsed trigger.  Arguments: eight per watch (watch id, event, key
 * mode, key, what to stage, fires_when, schemas, alias); a 1.0 trigger has
 * five (its fires_when is its WHEN clause).
 */
static CaptureGroup *
capture_group(TriggerData *trigdata)
{
	Trigger    *tg = trigdata->tg_trigger;
	Relation	rel = trigdata->tg_relation;
	CaptureGroup *g;
	bool		found;
	int			per = tg->tgnargs == 5 ? 5 : 8;
	MemoryContext old;

	if (tg->tgnargs == 0 || (tg->tgnargs != 5 && tg->tgnargs % 8 != 0))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._capture() needs eight trigger arguments per watch"),
				 errhint("Attach capture with wa_notify.watch().")));
	if (group_cache == NULL)
		group_cache_init();
	g = hash_search(group_cache, &tg->tgoid, HASH_ENTER, &found);
	if (!found)
	{
		g->cxt = NULL;
		g->busy = 0;
	}
	else if (g->valid)
		return g;
	/* a call still running uses the old entry: leave its memory to it */
	if (g->cxt && g->busy == 0)
		MemoryContextDelete(g->cxt);
	g->valid = false;
	g->relid = RelationGetRelid(rel);
	g->cxt = AllocSetContextCreate(CacheMemoryContext, "wa_notify capture trigger",
								   ALLOCSET_SMALL_SIZES);
	g->newslot = g->oldslot = NULL;
	old = MemoryContextSwitchTo(g->cxt);
	g->relname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											RelationGetRelationName(rel));
	g->nwatches = tg->tgnargs / per;
	g->watches = palloc0(sizeof(CaptureWatch) * g->nwatches);
	for (int i = 0; i < g->nwatches; i++)
	{
		CaptureWatch *w = &g->watches[i];
		char	  **a = tg->tgargs + i * per;

		w->watch_id = (int64) strtoll(a[0], NULL, 10);
		w->event = pstrdup(a[1]);
		w->event_text = CStringGetTextDatum(a[1]);
		w->key_is_query = (a[2][0] == 'e');
		w->key = pstrdup(a[3]);
		w->keep = pstrdup(a[4]);
		w->fires_when = pstrdup(per == 8 ? a[5] : "");
		w->path = pstrdup(per == 8 ? a[6] : "");
		w->alias = pstrdup(per == 8 ? a[7] : "");
		if (!w->key_is_query)
			resolve_key_column(w, RelationGetDescr(rel));
	}
	{
		/* to_jsonb(row): an FmgrInfo whose call expression gives the row type */
		FuncExpr   *fexpr;

		fmgr_info_cxt(F_TO_JSONB, &g->to_jsonb, g->cxt);
		fexpr = makeFuncExpr(F_TO_JSONB, JSONBOID,
							 list_make1(makeNullConst(rel->rd_rel->reltype, -1, InvalidOid)),
							 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		g->to_jsonb.fn_expr = (Node *) fexpr;
	}
	MemoryContextSwitchTo(old);
	g->valid = true;
	return g;
}

/*
 * The row being captured: its slots (a row-level call's own, or a
 * statement-level call's read from its transition tables), its heap tuples
 * and whole-row values taken only when needed.
 */
typedef struct CaptureRow
{
	TriggerData *trigdata;
	TupleTableSlot *newslot;
	TupleTableSlot *oldslot;	/* UPDATE only */
	HeapTuple	newtup;			/* NULL until taken */
	HeapTuple	oldtup;
	Datum		newrow;			/* (Datum) 0 until built */
	Datum		oldrow;
	const bool *live;			/* per watch: may it fire in this call? */
} CaptureRow;

static HeapTuple
new_row_tuple(CaptureRow *r)
{
	bool		should_free;

	if (r->newtup == NULL)
		r->newtup = ExecFetchSlotHeapTuple(r->newslot, false, &should_free);
	return r->newtup;
}

static Datum
new_row_datum(CaptureRow *r)
{
	if (r->newrow == (Datum) 0)
		r->newrow = heap_copy_tuple_as_datum(new_row_tuple(r), RelationGetDescr(r->trigdata->tg_relation));
	return r->newrow;
}

static Datum
old_row_datum(CaptureRow *r)
{
	bool		should_free;

	if (r->oldrow == (Datum) 0)
	{
		if (r->oldtup == NULL)
			r->oldtup = ExecFetchSlotHeapTuple(r->oldslot, false, &should_free);
		r->oldrow = heap_copy_tuple_as_datum(r->oldtup, RelationGetDescr(r->trigdata->tg_relation));
	}
	return r->oldrow;
}

/* fires_when of a watch: does the row fire, and with which error? */
static bool
watch_fires(CaptureGroup *g, CaptureWatch *w, CaptureRow *r, char **error)
{
	char	   *err;
	bool		fires;

	*error = NULL;
	if (w->fires_when[0] == '\0')
		return true;
	if (w->fw == NULL || !wa_fires_current(w->fw))
		w->fw = wa_fires_lookup(w->watch_id, g->relid, w->fires_when, w->path, w->alias);
	fires = wa_fires_eval(w->fw, r->newslot, r->oldslot, &err);
	if (err)
		*error = psprintf("fires_when of watch " INT64_FORMAT " (%s on %s) failed: %s; the expression was: %s",
						  w->watch_id, w->event, g->relname, err, w->fires_when);
	return fires;
}

/* the order key of a 'k' watch: the text of a column of the row */
static char *
column_key(CaptureWatch *w, CaptureRow *r, char **error)
{
	bool		isnull;
	Datum		v;

	if (w->key_attnum == 0)
	{
		*error = psprintf("the order key column %s does not exist", w->key);
		return NULL;
	}
	v = slot_getattr(r->newslot, w->key_attnum, &isnull);
	if (isnull)
		return NULL;
	return OutputFunctionCall(&w->key_output, v);
}

/* one watch of the trigger on one row: decide, take the key, stage */
static void
capture_watch(CaptureGroup *g, CaptureWatch *w, CaptureRow *r)
{
	TupleDesc	desc = RelationGetDescr(r->trigdata->tg_relation);
	bool		keep_row = (w->keep[0] == 'j' || w->keep[0] == 'c');
	char	   *key = NULL;
	char	   *error = NULL;
	char	   *fw_error;
	Datum		jrow = (Datum) 0;

	if (!watch_fires(g, w, r, &fw_error))
		return;
	if (w->key_is_query)
	{
		CaptureEntry *e = capture_entry(w->watch_id, r->trigdata->tg_relation->rd_rel->reltype,
										w->key);

		if (!run_key_query(e, new_row_datum(r), r->oldslot ? old_row_datum(r) : (Datum) 0,
						   r->oldslot != NULL, &key, &error))
			return;
	}
	else
		key = column_key(w, r, &error);
	if (key == NULL && error == NULL)
		error = pstrdup("the order key expression gave NULL for this row");
	if (fw_error)
		error = fw_error;

	if (keep_row && error == NULL)
		jrow = staged_row(&g->to_jsonb, new_row_tuple(r), desc,
						  w->keep[0] == 'j' ? new_row_datum(r) : (Datum) 0, w->keep, &error);
	if (error && key)
		error = psprintf("%s (order %s)", error, key);
	/* a failed capture has no key: it must not stand in for a later good one */
	stage_capture(w->watch_id, w->event, w->event_text, error ? NULL : key, jrow,
				  keep_row && jrow != (Datum) 0 && error == NULL, error);
}

/* every watch of the trigger that may fire in this call, on one row */
static void
capture_row(CaptureGroup *g, CaptureRow *r)
{
	for (int i = 0; i < g->nwatches; i++)
		if (r->live[i])
			capture_watch(g, &g->watches[i], r);
}

/*
 * Which watches may fire in this call; false when none may.  An UPDATE
 * that changed none of the columns a watch's compiled fires_when reads
 * (tg_updatedcols: the statement's SET columns and the generated columns
 * they feed) leaves what it gives unchanged on every row, so the watch
 * cannot fire: unless a BEFORE UPDATE trigger of the table may have
 * changed other columns, which is decided row by row as always.
 */
static bool
live_watches(CaptureGroup *g, TriggerData *trigdata, bool *live)
{
	const Bitmapset *changed = trigdata->tg_updatedcols;
	TriggerDesc *trigdesc = trigdata->tg_relation->trigdesc;
	bool		narrowed = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) && changed != NULL &&
		!(trigdesc && trigdesc->trig_update_before_row);
	bool		any = false;

	for (int i = 0; i < g->nwatches; i++)
	{
		CaptureWatch *w = &g->watches[i];

		live[i] = true;
		if (narrowed && w->fires_when[0] != '\0')
		{
			if (w->fw == NULL || !wa_fires_current(w->fw))
				w->fw = wa_fires_lookup(w->watch_id, g->relid, w->fires_when, w->path, w->alias);
			live[i] = wa_fires_reads_any(w->fw, changed);
		}
		any |= live[i];
	}
	return any;
}

/*
 * A statement-level call: every row of the statement, read from its
 * transition tables (UPDATE: the old and the new table hold the rows in
 * the same order), each row's memory freed before the next.
 */
static void
capture_statement(CaptureGroup *g, TriggerData *trigdata, const bool *live)
{
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	Tuplestorestate *newts = trigdata->tg_newtable;
	Tuplestorestate *oldts = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_oldtable : NULL;
	TupleTableSlot *newslot;
	TupleTableSlot *oldslot;
	MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext, "wa_notify capture row",
												 ALLOCSET_DEFAULT_SIZES);
	int			newptr;
	int			oldptr = 0;

	/*
	 * The group's slots (over a copy of the descriptor: no pin to release),
	 * unless a call of the same trigger is already running (a key query
	 * writing to the table): then slots of this call's own.
	 */
	if (g->busy > 1)
	{
		newslot = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc), &TTSOpsMinimalTuple);
		oldslot = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc), &TTSOpsMinimalTuple);
	}
	else
	{
		if (g->newslot == NULL)
		{
			MemoryContext gold = MemoryContextSwitchTo(g->cxt);

			g->newslot = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc), &TTSOpsMinimalTuple);
			g->oldslot = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc), &TTSOpsMinimalTuple);
			MemoryContextSwitchTo(gold);
		}
		newslot = g->newslot;
		oldslot = g->oldslot;
	}
	if (!oldts)
		oldslot = NULL;
	/* read pointers of our own: another trigger may read the same tables */
	newptr = tuplestore_alloc_read_pointer(newts, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(newts, newptr);
	tuplestore_rescan(newts);
	if (oldts)
	{
		oldptr = tuplestore_alloc_read_pointer(oldts, EXEC_FLAG_REWIND);
		tuplestore_select_read_pointer(oldts, oldptr);
		tuplestore_rescan(oldts);
	}
	PG_TRY();
	{
		for (;;)
		{
			CaptureRow	r;
			MemoryContext old;

			tuplestore_select_read_pointer(newts, newptr);
			if (!tuplestore_gettupleslot(newts, true, false, newslot))
				break;
			if (oldts)
			{
				tuplestore_select_read_pointer(oldts, oldptr);
				if (!tuplestore_gettupleslot(oldts, true, false, oldslot))
					break;
			}
			memset(&r, 0, sizeof(r));
			r.trigdata = trigdata;
			r.newslot = newslot;
			r.oldslot = oldslot;
			r.live = live;
			old = MemoryContextSwitchTo(rowcxt);
			capture_row(g, &r);
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
	}
	PG_FINALLY();
	{
		/*
		 * Kept slots never hold a tuple past the call (one read from a
		 * transition table spilled to disk belongs to the slot).
		 */
		tuplestore_select_read_pointer(newts, 0);
		ExecClearTuple(newslot);
		if (oldts)
		{
			tuplestore_select_read_pointer(oldts, 0);
			ExecClearTuple(oldslot);
		}
	}
	PG_END_TRY();
	MemoryContextDelete(rowcxt);
}

PG_FUNCTION_INFO_V1(wa_notify_capture);
Datum
wa_notify_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	CaptureGroup *g;
	StageBatch *outer = stage_batch;
	StageBatch	batch_data;		/* on the stack: a one-row call allocates nothing for it */
	StageBatch *batch = &batch_data;
	bool	   *live;
	bool		per_statement;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._capture() must be called as a trigger")));
	per_statement = TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event);
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		(per_statement && trigdata->tg_newtable == NULL) ||
		(per_statement && TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) && trigdata->tg_oldtable == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._capture() must be an AFTER ... FOR EACH ROW trigger, or FOR EACH STATEMENT with its transition tables")));
	/* the parsed trigger, kept for the statement's other rows */
	g = (CaptureGroup *) fcinfo->flinfo->fn_extra;
	if (g == NULL || !g->valid || g->tgoid != trigdata->tg_trigger->tgoid)
	{
		g = capture_group(trigdata);
		fcinfo->flinfo->fn_extra = g;
	}

	live = palloc(sizeof(bool) * g->nwatches);
	if (!live_watches(g, trigdata, live))
		return PointerGetDatum(NULL);	/* the statement (or row) cannot fire any */
	batch->cxt = CurrentMemoryContext;
	batch->rel = NULL;
	batch->ntuples = 0;
	g->busy++;
	stage_batch = batch;
	PG_TRY();
	{
		if (per_statement)
			capture_statement(g, trigdata, live);
		else
		{
			CaptureRow	r;

			memset(&r, 0, sizeof(r));
			r.trigdata = trigdata;
			r.live = live;
			if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			{
				r.oldtup = trigdata->tg_trigtuple;
				r.oldslot = trigdata->tg_trigslot;
				r.newtup = trigdata->tg_newtuple;
				r.newslot = trigdata->tg_newslot;
			}
			else
			{
				r.newtup = trigdata->tg_trigtuple;
				r.newslot = trigdata->tg_trigslot;
			}
			capture_row(g, &r);
		}
		if (batch->rel)
		{
			flush_stage_batch(batch);
			table_close(batch->rel, NoLock);
		}
	}
	PG_FINALLY();
	{
		g->busy--;
		stage_batch = outer;
	}
	PG_END_TRY();
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
	MemoryContext caller_cxt = CurrentMemoryContext;

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
	/* the texts live in SPI's memory: copy them into the result first */
	{
		MemoryContext spi_cxt = MemoryContextSwitchTo(caller_cxt);

		result = heap_form_tuple(tupdesc, values, nulls);
		MemoryContextSwitchTo(spi_cxt);
	}
	SPI_freeplan(plan);
	SPI_finish();
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
