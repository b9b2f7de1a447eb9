/*-------------------------------------------------------------------------
 * tally.c
 *	  The message tally's keys and its statement trigger (45_tally.sql):
 *	  the one home of what a message counts for.
 *
 *	  A message counts, in the UTC hour of a time of its own, per sender:
 *	    'c'  created_at, key: its status;
 *	    's'  sent_at (if sent), key: 'd' delivered and/or 'r' read
 *	         (delivered_at or read_at set, or a status that says so);
 *	    'f'  failed_at of a failed message, key: '';
 *	    'b'  sent_at of a billable message, key: its market prefix (the
 *	         first four characters of the phone without its leading '+' and
 *	         spaces: a masked phone keeps its calling code) '/' its pricing
 *	         category;
 *	  and in a part: 'infinity' for the live table, else the archive month
 *	  (UTC) of created_at.
 *
 *	  wa_notify_tally_trigger is the statement trigger of wa_notify.message
 *	  and of the archive's parent: it reads the statement's transition
 *	  tables (new rows +1, old rows -1), nets the keys, and adds what is
 *	  left to wa_notify.message_tally in one INSERT ... ON CONFLICT (SPI, a
 *	  kept plan), as the table's owner: whoever may change a message may
 *	  count it.  Its rows are this backend's own (shard = its backend id,
 *	  unique among the backends running): two transactions never add to
 *	  the same row, so no writer waits for another and none can deadlock,
 *	  and a report sums the shards.  A statement that changed no key (a
 *	  hold reason, an attempt count) writes nothing.  _tally_keys(), _tally_hour() and _tally_part() give
 *	  the same rule to SQL (the scans of a partial hour, the checks, the
 *	  repair).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#if PG_VERSION_NUM >= 170000
#include "storage/procnumber.h"
#else
#include "storage/backendid.h"
#endif
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "wa_notify.h"

#define TALLY_PREFIX_CHARS	4

/* this backend's shard of the tally: its id among the running backends (0: maintain()'s) */
#if PG_VERSION_NUM >= 170000
#define TALLY_SHARD			(MyProcNumber + 1)
#else
#define TALLY_SHARD			MyBackendId
#endif
#define USECS_PER_HOUR_I	((int64) 3600 * 1000000)

/* the columns a message counts by (attribute numbers in the trigger's relation) */
enum
{
	C_CREATED, C_SENT, C_DELIVERED, C_READ, C_FAILED, C_STATUS, C_BILLABLE,
	C_CATEGORY, C_PHONE, C_SENDER, C_NCOLS
};
static const char *const col_names[C_NCOLS] = {
	"created_at", "sent_at", "delivered_at", "read_at", "failed_at", "status", "billable",
	"pricing_category", "phone", "sender"
};

typedef struct TallyKey
{
	char		axis;
	TimestampTz at;				/* the time counted (hour: tally_hour) */
	char	   *k;				/* palloc'd */
} TallyKey;

typedef struct TallyEntry
{
	char		axis;
	TimestampTz hour;
	DateADT		part;
	char	   *sender;
	char	   *k;
	int64		n;
} TallyEntry;

/* The UTC hour of a time (infinities stay). */
static TimestampTz
tally_hour(TimestampTz t)
{
	int64		q;

	if (TIMESTAMP_NOT_FINITE(t))
		return t;
	q = t / USECS_PER_HOUR_I;
	if (t % USECS_PER_HOUR_I < 0)
		q--;
	return q * USECS_PER_HOUR_I;
}

/* 'infinity' for the live table, else the UTC month of created_at. */
static DateADT
tally_part(bool live, TimestampTz created_at)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (live)
		return DATEVAL_NOEND;
	if (TIMESTAMP_IS_NOBEGIN(created_at))
		return DATEVAL_NOBEGIN;
	if (TIMESTAMP_IS_NOEND(created_at) || timestamp2tm(created_at, NULL, &tm, &fsec, NULL, NULL) != 0)
		return DATEVAL_NOEND;
	return date2j(tm.tm_year, tm.tm_mon, 1) - POSTGRES_EPOCH_JDATE;
}

/* the market prefix of a phone: its first characters but '+' before and spaces */
static void
append_prefix(StringInfo buf, const char *phone)
{
	int			chars = 0;

	while (*phone == '+')
		phone++;
	while (*phone && chars < TALLY_PREFIX_CHARS)
	{
		int			len = pg_mblen(phone);

		if (*phone != ' ')
		{
			appendBinaryStringInfo(buf, phone, len);
			chars++;
		}
		phone += len;
	}
}

static char *
text_or_null(Datum d, bool isnull)
{
	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * The keys of one message, from its column values (v, isnull: C_NCOLS of
 * them); returns how many (0-4) were written into keys.
 */
static int
tally_keys(const Datum *v, const bool *isnull, TallyKey *keys)
{
	int			nk = 0;
	char	   *status = text_or_null(v[C_STATUS], isnull[C_STATUS]);
	bool		delivered,
				read;

	if (!isnull[C_CREATED])
		keys[nk++] = (TallyKey) {'c', DatumGetTimestampTz(v[C_CREATED]), status ? status : pstrdup("")};
	/* (a NULL status: no key of its own; 'c' counts it under '') */
	if (!isnull[C_SENT])
	{
		delivered = !isnull[C_DELIVERED] ||
			(status && (strcmp(status, "delivered") == 0 || strcmp(status, "read") == 0));
		read = !isnull[C_READ] || (status && strcmp(status, "read") == 0);
		keys[nk++] = (TallyKey) {'s', DatumGetTimestampTz(v[C_SENT]),
			pstrdup(delivered ? (read ? "dr" : "d") : (read ? "r" : ""))};
	}
	if (!isnull[C_FAILED] && status && strcmp(status, "failed") == 0)
		keys[nk++] = (TallyKey) {'f', DatumGetTimestampTz(v[C_FAILED]), pstrdup("")};
	if (!isnull[C_SENT] && !isnull[C_BILLABLE] && DatumGetBool(v[C_BILLABLE]))
	{
		StringInfoData b;

		initStringInfo(&b);
		if (!isnull[C_PHONE])
			append_prefix(&b, TextDatumGetCString(v[C_PHONE]));
		appendStringInfoChar(&b, '/');
		if (!isnull[C_CATEGORY])
			appendStringInfoString(&b, TextDatumGetCString(v[C_CATEGORY]));
		keys[nk++] = (TallyKey) {'b', DatumGetTimestampTz(v[C_SENT]), b.data};
	}
	return nk;
}

/* the attribute numbers of the counted columns in a relation (ERROR if one is missing) */
static void
find_columns(TupleDesc desc, AttrNumber *attnums)
{
	for (int c = 0; c < C_NCOLS; c++)
	{
		attnums[c] = InvalidAttrNumber;
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute a = TupleDescAttr(desc, i);

			if (!a->attisdropped && strcmp(NameStr(a->attname), col_names[c]) == 0)
			{
				attnums[c] = a->attnum;
				break;
			}
		}
		if (attnums[c] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("wa_notify's message tally needs the column \"%s\"", col_names[c])));
	}
}

/* every row of a transition table, counted n (+1 or -1) */
static void
add_rows(Tuplestorestate *ts, TupleTableSlot *slot, const AttrNumber *attnums, bool live, int n,
		 TallyEntry **entries, int *nentries, int *cap)
{
	Datum		v[C_NCOLS];
	bool		isnull[C_NCOLS];
	TallyKey	keys[4];

	if (ts == NULL)
		return;
	tuplestore_rescan(ts);
	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		int			nk;
		char	   *sender;
		DateADT		part;

		for (int c = 0; c < C_NCOLS; c++)
			v[c] = slot_getattr(slot, attnums[c], &isnull[c]);
		nk = tally_keys(v, isnull, keys);
		sender = isnull[C_SENDER] ? pstrdup("") : TextDatumGetCString(v[C_SENDER]);
		part = tally_part(live, isnull[C_CREATED] ? 0 : DatumGetTimestampTz(v[C_CREATED]));
		for (int i = 0; i < nk; i++)
		{
			if (*nentries == *cap)
			{
				*cap *= 2;
				*entries = repalloc(*entries, sizeof(TallyEntry) * *cap);
			}
			(*entries)[(*nentries)++] = (TallyEntry) {keys[i].axis, tally_hour(keys[i].at), part,
				sender, keys[i].k, n};
		}
	}
}

static int
entry_cmp(const void *a, const void *b)
{
	const TallyEntry *x = a;
	const TallyEntry *y = b;
	int			r;

	if (x->axis != y->axis)
		return x->axis < y->axis ? -1 : 1;
	if (x->hour != y->hour)
		return x->hour < y->hour ? -1 : 1;
	if (x->part != y->part)
		return x->part < y->part ? -1 : 1;
	if ((r = strcmp(x->sender, y->sender)) != 0)
		return r;
	return strcmp(x->k, y->k);
}

static SPIPlanPtr insert_plan = NULL;

/* the statement's net counts, added to this backend's rows of message_tally */
static void
write_counts(TallyEntry *e, int n, Oid owner)
{
	Datum	   *axes = palloc(sizeof(Datum) * n);
	Datum	   *hours = palloc(sizeof(Datum) * n);
	Datum	   *senders = palloc(sizeof(Datum) * n);
	Datum	   *ks = palloc(sizeof(Datum) * n);
	Datum	   *parts = palloc(sizeof(Datum) * n);
	Datum	   *ns = palloc(sizeof(Datum) * n);
	Datum		args[7];
	Oid			save_userid;
	int			save_sec_context;

	for (int i = 0; i < n; i++)
	{
		axes[i] = CharGetDatum(e[i].axis);
		hours[i] = TimestampTzGetDatum(e[i].hour);
		senders[i] = CStringGetTextDatum(e[i].sender);
		ks[i] = CStringGetTextDatum(e[i].k);
		parts[i] = DateADTGetDatum(e[i].part);
		ns[i] = Int64GetDatum(e[i].n);
	}
	args[0] = PointerGetDatum(construct_array(axes, n, CHAROID, 1, true, TYPALIGN_CHAR));
	args[1] = PointerGetDatum(construct_array(hours, n, TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(senders, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_array(ks, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_array(parts, n, DATEOID, sizeof(DateADT), true, TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_array(ns, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[6] = Int32GetDatum(TALLY_SHARD);

	/* as the tally's owner, like a SECURITY DEFINER function */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "wa_notify tally: SPI_connect failed");
		if (insert_plan == NULL)
		{
			Oid			types[7] = {CHARARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			DATEARRAYOID, INT8ARRAYOID, INT4OID};
			SPIPlanPtr	p = SPI_prepare("INSERT INTO wa_notify.message_tally AS t (axis, hour, sender, k, part, shard, n) "
										"SELECT d.axis, d.hour, d.sender, d.k, d.part, $7, d.n "
										"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
										"pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
										"pg_catalog.unnest($6)) AS d(axis, hour, sender, k, part, n) "
										"ON CONFLICT (axis, hour, sender, k, part, shard) "
										"DO UPDATE SET n = t.n OPERATOR(pg_catalog.+) EXCLUDED.n", 7, types);

			if (p == NULL)
				elog(ERROR, "wa_notify tally: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(p);
			insert_plan = p;
		}
		if (SPI_execute_plan(insert_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "wa_notify tally: the tally's insert failed");
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
}

PG_FUNCTION_INFO_V1(wa_notify_tally_trigger);
Datum
wa_notify_tally_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	attnums[C_NCOLS];
	TupleTableSlot *slot;
	TallyEntry *entries;
	int			nentries = 0;
	int			cap = 64;
	int			out = 0;
	bool		live;
	Oid			owner;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._tally_trigger() must be called as a statement trigger")));
	if (trigdata->tg_newtable == NULL && trigdata->tg_oldtable == NULL)
		return PointerGetDatum(NULL);

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	live = strcmp(RelationGetRelationName(rel), "message") == 0;
	find_columns(desc, attnums);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	entries = palloc(sizeof(TallyEntry) * cap);
	add_rows(trigdata->tg_newtable, slot, attnums, live, 1, &entries, &nentries, &cap);
	add_rows(trigdata->tg_oldtable, slot, attnums, live, -1, &entries, &nentries, &cap);
	ExecDropSingleTupleTableSlot(slot);

	/* net per key: sorted, then summed in place */
	qsort(entries, nentries, sizeof(TallyEntry), entry_cmp);
	for (int i = 0; i < nentries; i++)
	{
		if (out > 0 && entry_cmp(&entries[out - 1], &entries[i]) == 0)
			entries[out - 1].n += entries[i].n;
		else
			entries[out++] = entries[i];
	}
	nentries = out;
	out = 0;
	for (int i = 0; i < nentries; i++)
		if (entries[i].n != 0)
			entries[out++] = entries[i];
	if (out == 0)
		return PointerGetDatum(NULL);

	/* (the extension's tables, the message table and the tally, have one owner) */
	owner = rel->rd_rel->relowner;
	write_counts(entries, out, owner);
	return PointerGetDatum(NULL);
}

/* wa_notify._tally_hour(timestamptz): the UTC hour */
PG_FUNCTION_INFO_V1(wa_notify_tally_hour);
Datum
wa_notify_tally_hour(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(tally_hour(PG_GETARG_TIMESTAMPTZ(0)));
}

/* wa_notify._tally_part(live boolean, created_at timestamptz) */
PG_FUNCTION_INFO_V1(wa_notify_tally_part);
Datum
wa_notify_tally_part(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATEADT(tally_part(PG_GETARG_BOOL(0), PG_GETARG_TIMESTAMPTZ(1)));
}

/*
 * wa_notify._tally_keys(created_at, sent_at, delivered_at, read_at,
 * failed_at, status, billable, pricing_category, phone): (axis, at, k) rows.
 */
PG_FUNCTION_INFO_V1(wa_notify_tally_keys);
Datum
wa_notify_tally_keys(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	TallyKey   *keys;

	/* value per call: the keys of the message, computed at the first */
	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		Datum		v[C_NCOLS];
		bool		isnull[C_NCOLS];
		TupleDesc	tupdesc;

		funcctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "wa_notify._tally_keys: a record type is needed");
		funcctx->tuple_desc = BlessTupleDesc(tupdesc);
		for (int c = 0; c < C_SENDER; c++)
		{
			isnull[c] = PG_ARGISNULL(c);
			v[c] = isnull[c] ? (Datum) 0 : PG_GETARG_DATUM(c);
		}
		isnull[C_SENDER] = true;
		v[C_SENDER] = (Datum) 0;
		keys = palloc(sizeof(TallyKey) * 4);
		funcctx->max_calls = tally_keys(v, isnull, keys);
		funcctx->user_fctx = keys;
		MemoryContextSwitchTo(old);
	}
	funcctx = SRF_PERCALL_SETUP();
	keys = funcctx->user_fctx;
	if (funcctx->call_cntr < funcctx->max_calls)
	{
		TallyKey   *key = &keys[funcctx->call_cntr];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CharGetDatum(key->axis);
		values[1] = TimestampTzGetDatum(key->at);
		values[2] = CStringGetTextDatum(key->k);
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(heap_form_tuple(funcctx->tuple_desc, values, nulls)));
	}
	SRF_RETURN_DONE(funcctx);
}
