/*-------------------------------------------------------------------------
 * worker.c
 *	  The dispatcher: a database's background worker and its main loop.
 *	  The launcher (launcher.c) starts one per database, with the database
 *	  in bgw_main_arg; the same entry point also runs the launcher's short
 *	  probes (is the extension there?).  It idles on a hot standby; while
 *	  the extension is missing it waits for it when the database is named
 *	  in wa_notify.database, else it leaves (the launcher starts it again
 *	  at CREATE EXTENSION).  It recovers messages a dead worker left 'sending' (review under
 *	  at_most_once, queued under at_least_once), and then, cycle after
 *	  cycle: resolves captured messages (wa_notify._resolve_pending()),
 *	  takes the typed settings snapshot (settings.c) and the cycle's state
 *	  (wa_notify._dispatch_cycle(): expiry, holds, pause state), decides whether and when it may send (master
 *	  switch, account pause, cool-down, quiet hours, per-batch cap, random
 *	  delay, rate cap), claims a batch in one transaction, sends it through
 *	  the libcurl multi client (graph.c) with at most max_in_flight requests
 *	  in flight, and records the batch's outcomes in one transaction
 *	  (wa_notify._record(), typed arrays), classified by graph_errors.c.
 *	  The class decides only what happens to the rest of the batch here
 *	  (apply_to_batch()); what an error does to the database is
 *	  wa_notify._apply_error()'s (src/sql/1.1/30_dispatch.sql), the same
 *	  function the webhook calls.  dispatch_once() and the send loop
 *	  (pipeline_loop()) are lists of named steps, below them.
 *
 *	  Also here: the GUC wa_notify.request_timeout.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <signal.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "wa_notify.h"
#include "graph.h"
#include "graph_errors.h"
#include "in_flight.h"
#include "settings.h"

int			wa_request_timeout = 30;	/* seconds */

#define WA_MAX_ATTEMPTS			6		/* transient errors: then failed */
#define WA_CHECK_INTERVAL		300.0	/* connection check period, s */
#define WA_IDLE_RECHECK			60.0	/* longest idle wait, s */
#define WA_CLAIM_AHEAD			0.05	/* paced send: claim this early, s */
#define WA_SHUTDOWN_GRACE		3.0		/* in-flight requests on SIGTERM, s */
#define WA_MAX_BATCH			2000

/* One claimed message on its way. */
typedef struct WaItem
{
	WaGraphRequest req;			/* first: completed pointers cast back */
	char	   *phone;
	char	   *event;
	bool		attempted;		/* request started */
	bool		finished;		/* outcome known (or skipped: not attempted) */
	bool		recorded;		/* outcome written */
	const WaGraphError *err;	/* classification (NONE: ok) */
} WaItem;

/*
 * What one cycle runs on: settings from the typed snapshot (settings.c),
 * state computed by wa_notify._dispatch_cycle().  Loaded by load_cycle().
 */
typedef struct WaCycle
{
	bool		enabled;
	bool		ready;
	bool		use_templates;
	char	   *url;			/* {base}/{version}/{pnid}/messages */
	double		min_delay;
	double		max_delay;
	int			max_per_batch;
	double		polling_interval;
	double		max_rate;
	WaPacing	pacing;			/* the settings as the number's level applies them */
	double		recipient_gap;
	int			daily_limit;
	double		quiet_until;	/* 0: none */
	char	   *paused_reason;	/* NULL: not paused */
	int			paused_code;
	double		pause_until;	/* 0: none */
	double		rate_factor;
	char	   *settings_version;
	double		next_due;		/* 0: none */
	int			sent_in_window; /* at start only */
	double		window_first;	/* oldest claim in the window (at start) */
} WaCycle;

static MemoryContext cycle_cxt = NULL;
static WaGraphClient *client = NULL;
static double last_start = 0;	/* when the last request started */
static double next_gap = 0;		/* the random delay before the next one */
static char activity[256] = "";
static char reported_activity[256] = "";
static double reported_next = -1;
static char *last_settings_version = NULL;	/* malloc'd */
static double next_check_at = 0;
static double window_start = 0;	/* per-batch cap: current polling interval */
static int	window_count = -1;	/* claims in it; -1: seed from the database */
static WaResponseTime response_time;	/* of the answers (auto max_in_flight) */

void
wa_worker_define_gucs(void)
{
	DefineCustomIntVariable("wa_notify.request_timeout",
							"Total timeout of one Graph API request.",
							"The connect timeout is the smaller of this and 10 s.",
							&wa_request_timeout,
							30, 1, 600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

static WaDbSlot *my_slot = NULL;	/* this database's slot (launcher.c) */

static void
wa_worker_detach(int code, Datum arg)
{
	if (client)
		wa_graph_abort_all(client);
}

static double
rand_unit(void)
{
	return (double) random() / 2147483648.0;
}

static void
set_activity(const char *fmt,...) pg_attribute_printf(1, 2);

static void
set_activity(const char *fmt,...)
{
	va_list		ap;
	char		buf[256];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (strcmp(buf, activity) != 0)
	{
		strlcpy(activity, buf, sizeof(activity));
		pgstat_report_activity(STATE_RUNNING, activity);
	}
}

static void
begin_tx(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
end_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	/* commit leaves TopMemoryContext current: never allocate there */
	MemoryContextSwitchTo(cycle_cxt);
}

static void
exec_sql(const char *sql, int expect)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expect)
		elog(ERROR, "wa_notify worker: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
}

static char *
col(int row, int c)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, c);
}

static double
col_f(int row, int c)
{
	char	   *v = col(row, c);

	return v ? strtod(v, NULL) : 0;
}

static char *
time_str(double epoch)
{
	TimestampTz t = (TimestampTz) ((epoch - ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * (double) SECS_PER_DAY)) * USECS_PER_SEC);
	const char *s = timestamptz_to_str(t);

	return pstrdup(s);
}

/* Mirror the activity (and the next dispatch time) into wa_notify.state. */
static void
report_state(double next_at)
{
	Oid			types[2] = {TEXTOID, FLOAT8OID};
	Datum		vals[2];
	char		nulls[2] = {' ', ' '};

	if (strcmp(activity, reported_activity) == 0 &&
		fabs(next_at - reported_next) < 0.5)
		return;
	begin_tx();
	vals[0] = CStringGetTextDatum(activity);
	vals[1] = Float8GetDatum(next_at);
	if (next_at <= 0)
		nulls[1] = 'n';
	if (SPI_execute_with_args("SELECT wa_notify._report($1, to_timestamp($2))",
							  2, types, vals, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify worker: could not report its state");
	end_tx();
	strlcpy(reported_activity, activity, sizeof(reported_activity));
	reported_next = next_at;
}

/* Wait on the latch until `until` (epoch) at the latest. */
static void
wait_until(double until)
{
	double		ms = (until - wa_now()) * 1000.0;
	int			rc;

	if (ms < 1)
		ms = 1;
	if (ms > WA_IDLE_RECHECK * 1000.0)
		ms = WA_IDLE_RECHECK * 1000.0;
	/*
	 * Before a long sleep, hand the cumulative statistics in: end_tx's
	 * pgstat_report_stat(false) keeps what came within the last second, and
	 * an idle worker would otherwise show its last commits only at its next
	 * wake-up.
	 */
	if (ms >= 1000)
		pgstat_report_stat(true);
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   (long) ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		if (my_slot)
			pg_atomic_fetch_add_u64(&my_slot->wakes_seen, 1);
	}
	CHECK_FOR_INTERRUPTS();
}

/*
 * A short pause inside the send pipeline (pacing, waiting for a slot).  It
 * does not consume the latch, so a wake-up that arrives meanwhile is seen by
 * the main loop's next wait; it ends at once if the postmaster dies.
 */
static void
nap(long ms)
{
	(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, Max(ms, 1), PG_WAIT_EXTENSION);
}

static void
handle_signals(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Is the extension there, and at the version this library serves? */
typedef enum WaExtState
{
	WA_EXT_MISSING,
	WA_EXT_OLD,					/* installed at another version: ALTER ... UPDATE */
	WA_EXT_READY
} WaExtState;

static WaExtState
extension_state(char *installed, size_t len)
{
	WaExtState	st = WA_EXT_MISSING;

	installed[0] = '\0';
	begin_tx();
	exec_sql("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'wa_notify'",
			 SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		strlcpy(installed, col(0, 1), len);
		st = strcmp(installed, WA_EXTVERSION) == 0 ? WA_EXT_READY : WA_EXT_OLD;
	}
	end_tx();
	return st;
}

/* The number of a column of the current SPI result, by name. */
static int
col_number(const char *name)
{
	int			c = SPI_fnumber(SPI_tuptable->tupdesc, name);

	if (c <= 0)
		elog(ERROR, "wa_notify worker: no column \"%s\" in the cycle's state", name);
	return c;
}

#define col_named(name)		col(0, col_number(name))
#define col_f_named(name)	col_f(0, col_number(name))

/*
 * One transaction: the settings snapshot (settings.c, typed, by name) and
 * the cycle's housekeeping and computed state (wa_notify._dispatch_cycle(),
 * read by column name).
 */
static void
load_cycle(WaCycle *cy)
{
	const WaSettings *set;
	MemoryContext old;
	Oid			t = BOOLOID;
	Datum		v = BoolGetDatum(window_count < 0);

	begin_tx();
	set = wa_settings();
	old = MemoryContextSwitchTo(cycle_cxt);
	cy->enabled = set->enabled;
	{
		char	   *token = wa_secret_get(NULL, "access_token");	/* file or row */

		cy->ready = token != NULL && token[0] != '\0' &&
			set->phone_number_id != NULL && set->phone_number_id[0] != '\0';
		if (token)
			explicit_bzero(token, strlen(token));
	}
	cy->use_templates = set->use_templates;
	cy->url = psprintf("%s/%s/%s/messages", set->api_base_url, set->api_version,
					   set->phone_number_id ? set->phone_number_id : "");
	cy->polling_interval = set->polling_interval;
	cy->recipient_gap = set->recipient_gap;
	cy->daily_limit = set->daily_recipient_limit;
	MemoryContextSwitchTo(old);

	if (SPI_execute_with_args("SELECT extract(epoch FROM quiet_until) AS quiet_until, paused_reason, "
							  "  paused_code, extract(epoch FROM pause_until) AS pause_until, rate_factor, "
							  "  settings_version, extract(epoch FROM next_due) AS next_due, "
							  "  sent_in_window, extract(epoch FROM window_first) AS window_first, "
							  "  (SELECT throughput_level FROM wa_notify.state) AS throughput_level "
							  "FROM wa_notify._dispatch_cycle($1)", 1, &t, &v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify worker: _dispatch_cycle() failed");
	if (SPI_processed != 1)
		elog(ERROR, "wa_notify worker: _dispatch_cycle() returned no row");
	old = MemoryContextSwitchTo(cycle_cxt);
	cy->quiet_until = col_f_named("quiet_until");
	cy->paused_reason = col_named("paused_reason");
	cy->paused_code = (int) col_f_named("paused_code");
	cy->pause_until = col_f_named("pause_until");
	cy->rate_factor = col_f_named("rate_factor");
	cy->settings_version = col_named("settings_version");
	cy->next_due = col_f_named("next_due");
	cy->sent_in_window = (int) col_f_named("sent_in_window");
	cy->window_first = col_f_named("window_first");
	/* the pacing defaults follow the number's throughput level (in_flight.c) */
	wa_pacing_for_level(wa_settings(), col_named("throughput_level"), &cy->pacing);
	cy->min_delay = cy->pacing.min_delay;
	cy->max_delay = cy->pacing.max_delay;
	cy->max_per_batch = cy->pacing.max_per_batch;
	cy->max_rate = cy->pacing.max_rate;
	MemoryContextSwitchTo(old);
	end_tx();
	if (cy->rate_factor <= 0 || cy->rate_factor > 1)
		cy->rate_factor = 1;
}

static void
connection_check(void)
{
	set_activity("checking the connection");
	begin_tx();
	exec_sql("SELECT api_status FROM wa_notify.check_connection()", SPI_OK_SELECT);
	end_tx();
	next_check_at = wa_now() + WA_CHECK_INTERVAL;
}

/*
 * A claimed batch ("chunk") lives in its own memory context until every
 * outcome in it is recorded, so that a long run of batches holds only the
 * chunks still in flight.
 */
typedef struct WaChunk
{
	MemoryContext cxt;
	WaItem	   *items;
	int			n;
	int			left;			/* items not recorded yet */
	struct WaChunk *next;
} WaChunk;

/* Claim up to n messages (one transaction); *token_out palloc'd in the chunk. */
static WaChunk *
claim(WaCycle *cy, int n, char **token_out)
{
	Oid			types[3] = {INT4OID, FLOAT8OID, INT4OID};
	Datum		vals[3];
	WaChunk    *ch;
	MemoryContext cxt;
	MemoryContext old;
	int			got;

	cxt = AllocSetContextCreate(cycle_cxt, "wa_notify batch", ALLOCSET_DEFAULT_SIZES);
	ch = MemoryContextAllocZero(cxt, sizeof(WaChunk));
	ch->cxt = cxt;

	begin_tx();
	old = MemoryContextSwitchTo(cxt);
	*token_out = wa_secret_get(NULL, "access_token");	/* file or row: secrets.c */
	MemoryContextSwitchTo(old);

	vals[0] = Int32GetDatum(n);
	vals[1] = Float8GetDatum(cy->recipient_gap);
	vals[2] = Int32GetDatum(cy->daily_limit);
	if (SPI_execute_with_args("SELECT id, phone, event, body FROM wa_notify._claim($1, $2, $3)",
							  3, types, vals, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify worker: could not claim messages");
	got = (int) SPI_processed;
	old = MemoryContextSwitchTo(cxt);
	ch->items = palloc0(sizeof(WaItem) * Max(got, 1));
	for (int i = 0; i < got; i++)
	{
		ch->items[i].req.id = strtoll(col(i, 1), NULL, 10);
		ch->items[i].phone = col(i, 2);
		ch->items[i].event = col(i, 3);
		ch->items[i].req.body = col(i, 4);
		ch->items[i].req.graph_code = -1;
		ch->items[i].req.cxt = cxt;
	}
	MemoryContextSwitchTo(old);
	end_tx();
	ch->n = ch->left = got;
	return ch;
}

/*
 * The class of a finished request.  A transport error is classified as "no
 * HTTP answer" (http 0) whatever libcurl saw of the headers, and the same
 * (code, http) pair goes to wa_notify._record(), so that SQL applies the
 * row this function found (see outcome_http()).
 */
static int
outcome_http(const WaGraphRequest *r)
{
	return r->curl_code != 0 ? 0 : (int) r->http_status;
}

static const WaGraphError *
classify(WaGraphRequest *r)
{
	int			http = outcome_http(r);

	if (r->curl_code == 0 && r->graph_code < 0 && r->wamid != NULL)
		return wa_graph_error_lookup(-1, http);	/* a 2xx with an id: ok */
	return wa_graph_failure_lookup(r->graph_code, http);
}

/* The parallel arrays of wa_notify._record(), one element per message. */
enum
{
	OUT_ID, OUT_ATTEMPTED, OUT_OK, OUT_HTTP, OUT_CODE, OUT_ERROR, OUT_WAMID, OUT_WAID,
	OUT_USER_ID, OUT_NCOLS
};
static const Oid outcome_elem_types[OUT_NCOLS] = {INT8OID, BOOLOID, BOOLOID, INT4OID, INT4OID,
TEXTOID, TEXTOID, TEXTOID, TEXTOID};
static const Oid outcome_array_types[OUT_NCOLS + 1] = {INT8ARRAYOID, BOOLARRAYOID, BOOLARRAYOID,
	INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4OID};

typedef struct WaOutcomes
{
	int			n;
	Datum	   *values[OUT_NCOLS];
	bool	   *nulls[OUT_NCOLS];
} WaOutcomes;

static void
outcome_set(WaOutcomes *o, int col, Datum v, bool isnull)
{
	o->values[col][o->n] = v;
	o->nulls[col][o->n] = isnull;
}

static void
outcome_text(WaOutcomes *o, int col, const char *s)
{
	outcome_set(o, col, s ? CStringGetTextDatum(s) : (Datum) 0, s == NULL);
}

/* Add one item's outcome (typed: nothing is serialized on the way). */
static void
outcome_add(WaOutcomes *o, const WaItem *it)
{
	bool		ok = it->attempted && it->err->cls == WA_ERR_NONE;

	outcome_set(o, OUT_ID, Int64GetDatum(it->req.id), false);
	outcome_set(o, OUT_ATTEMPTED, BoolGetDatum(it->attempted), false);
	outcome_set(o, OUT_OK, BoolGetDatum(ok), false);
	outcome_set(o, OUT_HTTP, Int32GetDatum(outcome_http(&it->req)), !it->attempted);
	outcome_set(o, OUT_CODE, Int32GetDatum(it->req.graph_code),
				!it->attempted || it->req.graph_code < 0);
	outcome_text(o, OUT_ERROR, it->attempted ? it->req.error : NULL);
	outcome_text(o, OUT_WAMID, it->attempted ? it->req.wamid : NULL);
	outcome_text(o, OUT_WAID, it->attempted ? it->req.wa_id : NULL);
	outcome_text(o, OUT_USER_ID, it->attempted ? it->req.user_id : NULL);
	o->n++;
}

/* Is this item's outcome ready to be written? */
static bool
outcome_ready(const WaItem *it, bool final)
{
	if (it->recorded)
		return false;
	/* started: when its answer came; not started: when skipped, or at the end */
	return it->attempted ? it->finished : (it->finished || final);
}

/* Collect the outcomes ready to be written, marking their items recorded. */
static void
collect_outcomes(WaChunk *head, bool final, WaOutcomes *o)
{
	int			cap = 0;

	for (WaChunk *ch = head; ch; ch = ch->next)
		cap += ch->n;
	o->n = 0;
	for (int c = 0; c < OUT_NCOLS; c++)
	{
		o->values[c] = palloc(sizeof(Datum) * Max(cap, 1));
		o->nulls[c] = palloc(sizeof(bool) * Max(cap, 1));
	}
	for (WaChunk *ch = head; ch; ch = ch->next)
		for (int i = 0; i < ch->n; i++)
		{
			WaItem	   *it = &ch->items[i];

			if (!outcome_ready(it, final))
				continue;
			it->recorded = true;
			ch->left--;
			outcome_add(o, it);
		}
}

/* wa_notify._record(...) in one transaction. */
static void
write_outcomes(const WaOutcomes *o)
{
	Datum		args[OUT_NCOLS + 1];
	char		nulls[OUT_NCOLS + 1];

	begin_tx();
	for (int c = 0; c < OUT_NCOLS; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {o->n};
		int			lbs[1] = {1};

		get_typlenbyvalalign(outcome_elem_types[c], &typlen, &typbyval, &typalign);
		args[c] = PointerGetDatum(construct_md_array(o->values[c], o->nulls[c], 1, dims, lbs,
													 outcome_elem_types[c], typlen, typbyval, typalign));
		nulls[c] = ' ';
	}
	args[OUT_NCOLS] = Int32GetDatum(WA_MAX_ATTEMPTS);
	nulls[OUT_NCOLS] = ' ';
	if (SPI_execute_with_args("SELECT wa_notify._record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
							  OUT_NCOLS + 1, (Oid *) outcome_array_types, args, nulls,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify worker: could not record outcomes");
	end_tx();
}

/* Free the chunks whose every item is recorded (or, at the end, can never be). */
static void
free_recorded_chunks(WaChunk **head, bool final)
{
	WaChunk   **pp = head;

	while (*pp)
	{
		WaChunk    *ch = *pp;
		bool		done = ch->left == 0;

		if (!done && final)
		{
			done = true;
			for (int i = 0; i < ch->n; i++)
				if (!ch->items[i].recorded && !(ch->items[i].attempted && !ch->items[i].finished))
					done = false;
		}
		if (done)
		{
			*pp = ch->next;
			MemoryContextDelete(ch->cxt);
		}
		else
			pp = &ch->next;
	}
}

/*
 * Record, in one transaction, every outcome known and not yet recorded:
 * finished requests, and requests never started (final, or skipped by a
 * stop rule).  Requests started whose answer never came stay 'sending' for
 * the crash recovery.  Fully recorded chunks are freed.
 */
static void
record(WaChunk **head, bool final)
{
	WaOutcomes	o;

	collect_outcomes(*head, final, &o);
	if (o.n > 0)
		write_outcomes(&o);
	for (int c = 0; c < OUT_NCOLS; c++)
	{
		pfree(o.values[c]);
		pfree(o.nulls[c]);
	}
	free_recorded_chunks(head, final);
}

/* mark the not-yet-started items matching event or phone as skipped for now */
static int
skip_unstarted(WaChunk *head, const char *event, const char *phone)
{
	int			k = 0;

	for (WaChunk *ch = head; ch; ch = ch->next)
		for (int i = 0; i < ch->n; i++)
		{
			WaItem	   *it = &ch->items[i];

			if (it->attempted || it->finished)
				continue;
			if ((event && strcmp(it->event, event) == 0) ||
				(phone && strcmp(it->phone, phone) == 0))
			{
				it->finished = true;	/* back to the queue, not attempted */
				k++;
			}
		}
	return k;
}

/*
 * Claim, send and record, overlapping the claim and record transactions
 * with the requests in flight: while requests are out, the next batch is
 * claimed as soon as nothing is left to start, and outcomes are recorded as
 * soon as enough are known.  Paced sending (delays) claims one message.
 * New batches are claimed for at most WA_PIPELINE_SECS, then the caller's
 * cycle re-reads settings.
 */
#define WA_PIPELINE_SECS 2.0

/* How one dispatch sends (dispatch_once decides, the pipeline follows). */
typedef struct WaSendPlan
{
	bool		paced;			/* one message at a time, random delays */
	int			in_flight;		/* requests at once */
	double		spacing;		/* rate cap: seconds between starts (0: none) */
	double		start_at;		/* the first request not before (epoch) */
	int			budget;			/* claims left in the per-batch window */
	int			batch_n;		/* messages per claim */
} WaSendPlan;

/* The pipeline's state, for its steps below. */
typedef struct WaPipeline
{
	WaCycle    *cy;
	const WaSendPlan *plan;
	int			budget;			/* claims still allowed */
	WaChunk    *head;			/* chunks with outcomes not yet recorded */
	WaChunk    *tail;
	WaChunk    *cur;			/* next item to start: cur->items[pos] */
	int			pos;
	WaGraphRequest **done;		/* completed requests, from wa_graph_wait */
	int			claimed;		/* messages claimed */
	int			unstarted;		/* claimed, neither started nor skipped */
	int			unrecorded;		/* finished since the last record() */
	int			finished;
	bool		stop;			/* start nothing more (error or shutdown) */
	bool		exhausted;		/* the queue had nothing more to claim */
	bool		configured;		/* the client has the token and URL */
	double		t0;
	double		shutdown_at;	/* SIGTERM seen (0: not) */
	double		next_start;		/* pacing: the next request not before */
} WaPipeline;

static void
notice_shutdown(WaPipeline *pl)
{
	if (ShutdownRequestPending && !pl->stop)
	{
		pl->stop = true;
		pl->shutdown_at = wa_now();
	}
}

/* Nothing (or little) left to start, and still in this cycle's time: claim. */
static bool
may_claim(const WaPipeline *pl)
{
	bool		paced = pl->plan->paced;

	return !pl->stop && !pl->exhausted && pl->budget > 0 &&
		(pl->unstarted == 0 || (!paced && pl->unstarted <= pl->plan->in_flight / 2)) &&
		(pl->claimed == 0 || (!paced && wa_now() - pl->t0 < WA_PIPELINE_SECS));
}

static void
claim_next_batch(WaPipeline *pl)
{
	char	   *token = NULL;
	WaChunk    *ch = claim(pl->cy, Min(pl->plan->batch_n, pl->budget), &token);

	if (!pl->configured && ch->n > 0)
	{
		wa_graph_client_configure(client, token ? token : "", pl->cy->url, pl->plan->in_flight,
								  Min(10000L, wa_request_timeout * 1000L),
								  wa_request_timeout * 1000L);
		pl->configured = true;
	}
	if (token)
		explicit_bzero(token, strlen(token));
	if (ch->n == 0)
	{
		MemoryContextDelete(ch->cxt);
		pl->exhausted = true;
	}
	else
	{
		if (pl->tail)
			pl->tail->next = ch;
		else
			pl->head = ch;
		pl->tail = ch;
		if (pl->cur == NULL)
		{
			pl->cur = ch;
			pl->pos = 0;
		}
		pl->claimed += ch->n;
		pl->budget -= ch->n;
		pl->unstarted += ch->n;
	}
	if (pl->plan->paced)
		pl->exhausted = true;
}

/* Start what pacing and the in-flight cap allow; returns the wait (ms) for the next. */
static long
start_requests(WaPipeline *pl, long timeout)
{
	double		now = wa_now();

	while (!pl->stop && pl->cur && pl->unstarted > 0 &&
		   wa_graph_in_flight(client) < pl->plan->in_flight)
	{
		WaItem	   *it;

		if (pl->pos >= pl->cur->n)
		{
			pl->cur = pl->cur->next;
			pl->pos = 0;
			continue;
		}
		it = &pl->cur->items[pl->pos];
		if (it->attempted || it->finished)
		{
			pl->pos++;
			continue;
		}
		if (now < pl->next_start)
		{
			double		ms = (pl->next_start - now) * 1000.0;

			if (wa_graph_in_flight(client) == 0 && ms < 200)
			{
				nap((long) ms);
				now = wa_now();
				continue;
			}
			return Max(1, Min(timeout, (long) ms));
		}
		if (!wa_graph_start(client, &it->req))
			break;
		it->attempted = true;
		pl->unstarted--;
		last_start = now = wa_now();
		pl->next_start = pl->plan->spacing > 0 ? now + pl->plan->spacing : now;
		pl->pos++;
	}
	return timeout;
}

/* Nothing in flight and nothing more to start in this cycle (or stopped). */
static bool
pipeline_finished(const WaPipeline *pl)
{
	double		now = wa_now();

	if (pl->shutdown_at > 0 && now - pl->shutdown_at > WA_SHUTDOWN_GRACE)
		return true;
	return wa_graph_in_flight(client) == 0 &&
		(pl->stop || (pl->unstarted == 0 &&
					  (pl->exhausted || pl->budget <= 0 || pl->plan->paced ||
					   now - pl->t0 >= WA_PIPELINE_SECS)));
}

/*
 * An answer's consequence for the rest of the batch, from the error's
 * effects: an account pause or a throttle starts nothing more; a held
 * template or a pair-rate wait puts back that event's or that recipient's
 * unstarted requests.
 */
static void
apply_to_batch(WaPipeline *pl, const WaItem *it)
{
	const WaErrorEffect *ef = wa_error_effect(it->err);

	if (ef->stop_batch || it->err->cooldown_secs > 0)
		pl->stop = true;
	if (ef->hold_template)
		pl->unstarted -= skip_unstarted(pl->head, it->event, NULL);
	if (ef->on_send == WA_RETRY_PAIR)
		pl->unstarted -= skip_unstarted(pl->head, NULL, it->phone);
}

/* Wait for answers (at most timeout ms) and classify them. */
static void
collect_answers(WaPipeline *pl, long timeout)
{
	int			k = 0;

	if (wa_graph_in_flight(client) > 0)
		k = wa_graph_wait(client, timeout, pl->done, pl->plan->in_flight);
	else if (pl->unstarted > 0)
		nap(Min(timeout, 100));
	for (int i = 0; i < k; i++)
	{
		WaItem	   *it = (WaItem *) pl->done[i];

		if (it->req.curl_code == 0)
			wa_response_time_observe(&response_time, wa_now() - it->req.started_at);
		it->finished = true;
		it->err = classify(&it->req);
		pl->finished++;
		pl->unrecorded++;
		apply_to_batch(pl, it);
	}
	if (k > 0)
		set_activity("sending %d/%d", pl->finished, pl->claimed);
}

/* Record what is known so far; chunks may be freed: re-find the cursor and tail. */
static void
record_progress(WaPipeline *pl)
{
	bool		alive = false;

	record(&pl->head, false);
	pl->unrecorded = 0;
	pl->tail = pl->head;
	while (pl->tail && pl->tail->next)
		pl->tail = pl->tail->next;
	for (WaChunk *ch = pl->head; ch; ch = ch->next)
		if (ch == pl->cur)
			alive = true;
	if (pl->cur && !alive)
	{
		pl->cur = pl->head;
		pl->pos = 0;
	}
}

static void
pipeline_loop(WaPipeline *pl)
{
	for (;;)
	{
		long		timeout;

		notice_shutdown(pl);
		if (may_claim(pl))
			claim_next_batch(pl);
		timeout = start_requests(pl, 100);
		if (pipeline_finished(pl))
			break;
		collect_answers(pl, timeout);
		if (pl->unrecorded >= Max(pl->plan->in_flight, 64) && !pl->stop)
			record_progress(pl);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * Run the pipeline; whatever happens, no request stays in flight.  The loop
 * is a function of its own so that no local variable lives across the
 * PG_TRY's setjmp.  Returns how many messages were claimed.
 */
static int
run_pipeline(WaCycle *cy, const WaSendPlan *plan)
{
	WaPipeline *pl = palloc0(sizeof(WaPipeline));
	int			claimed;

	pl->cy = cy;
	pl->plan = plan;
	pl->budget = plan->budget;
	pl->done = palloc(sizeof(WaGraphRequest *) * Max(plan->in_flight, 1));
	pl->t0 = wa_now();
	pl->next_start = plan->start_at;
	PG_TRY();
	{
		pipeline_loop(pl);
	}
	PG_FINALLY();
	{
		wa_graph_abort_all(client);
	}
	PG_END_TRY();
	record(&pl->head, true);
	/* how much of the size was in flight (auto max_in_flight, in_flight.c) */
	wa_in_flight_observe_batch(&response_time, plan->in_flight, pl->finished,
							   wa_now() - pl->t0, !pl->exhausted && !pl->stop && !plan->paced);
	/* anything left (answers that never came at shutdown) stays 'sending' */
	while (pl->head)
	{
		WaChunk    *ch = pl->head;

		pl->head = ch->next;
		MemoryContextDelete(ch->cxt);
	}
	claimed = pl->claimed;
	pfree(pl->done);
	pfree(pl);
	return claimed;
}

/* ------------------------------------------------- one dispatch decision */

/* Captured messages are resolved whatever else happens. */
static void
resolve_captures(void)
{
	begin_tx();
	exec_sql("SELECT wa_notify._resolve_pending()", SPI_OK_SELECT);
	end_tx();
}

/* The connection check, when due or when the settings changed; then re-read. */
static void
check_connection_if_due(WaCycle *cy)
{
	if (!cy->ready)
		return;
	if (wa_now() < next_check_at && last_settings_version != NULL &&
		!(cy->settings_version && strcmp(cy->settings_version, last_settings_version) != 0))
		return;
	free(last_settings_version);
	last_settings_version = strdup(cy->settings_version ? cy->settings_version : "");
	connection_check();
	load_cycle(cy);
}

/* Say why nothing is sent until *until; false when sending may go on. */
static bool
sending_blocked(const WaCycle *cy, double now, double *until)
{
	if (!cy->ready)
	{
		set_activity("idle: access_token or phone_number_id not configured");
		*until = now + WA_IDLE_RECHECK;
		report_state(0);
	}
	else if (!cy->enabled)
	{
		set_activity("paused: master switch off (enabled = false)");
		*until = now + WA_IDLE_RECHECK;
		report_state(0);
	}
	else if (cy->paused_reason)
	{
		set_activity("paused: %s", cy->paused_reason);
		*until = Min(now + WA_IDLE_RECHECK, next_check_at);
		report_state(0);
	}
	else if (cy->pause_until > now)
	{
		/* which error and for how long: wa_notify.graph_errors.cooldown_secs */
		set_activity("paused until %s: Graph error cool-down", time_str(cy->pause_until));
		*until = cy->pause_until;
		report_state(*until);
	}
	else if (cy->quiet_until > now)
	{
		set_activity("quiet hours until %s", time_str(cy->quiet_until));
		*until = cy->quiet_until;
		report_state(*until);
	}
	else
		return false;
	return true;
}

/*
 * Per-batch cap: at most max_per_batch claims per polling interval.  The
 * interval opens at its first claim; after a restart it is seeded from the
 * claims the database remembers.  Returns the claims left (<= 0: *until
 * says when the next interval opens).
 */
static int
batch_budget(const WaCycle *cy, double now, double *until)
{
	int			budget;

	if (window_count < 0)
	{
		window_count = cy->sent_in_window;
		window_start = cy->window_first > 0 ? cy->window_first : now;
	}
	if (now >= window_start + cy->polling_interval)
	{
		window_start = now;
		window_count = 0;
	}
	budget = cy->max_per_batch - window_count;
	if (budget <= 0)
	{
		*until = window_start + cy->polling_interval;
		set_activity("batch cap reached (%d/%d): next batch at %s",
					 window_count, cy->max_per_batch, time_str(*until));
		report_state(*until);
	}
	return budget;
}

/*
 * Pacing: the rate cap spaces the starts, the throttle factor lowers the
 * rate or the requests in flight, random delays send one message at a
 * time.  False when the next paced message is not due yet (*until).
 */
static bool
plan_sending(const WaCycle *cy, double now, int budget, WaSendPlan *plan, double *until)
{
	int			n;

	plan->paced = cy->max_delay > 0;
	/* max_in_flight, or auto: Little's law (in_flight.c), throttle included */
	plan->in_flight = wa_sender_in_flight(&cy->pacing, &response_time, cy->rate_factor);
	plan->spacing = 0;
	plan->budget = budget;
	if (cy->max_rate > 0)
		plan->spacing = 1.0 / (cy->max_rate * cy->rate_factor);
	if (plan->paced)
	{
		plan->start_at = last_start + Max(next_gap, plan->spacing);
		if (now < plan->start_at - WA_CLAIM_AHEAD)
		{
			set_activity("waiting %.1f s", plan->start_at - now);
			report_state(plan->start_at);
			*until = plan->start_at - WA_CLAIM_AHEAD;
			return false;
		}
		n = 1;
		plan->in_flight = 1;
	}
	else
	{
		plan->start_at = plan->spacing > 0 ? last_start + plan->spacing : now;
		n = Min(budget, Max(plan->in_flight * 2, 64));
		if (plan->spacing > 0)
			n = Min(n, (int) ceil(1.0 / plan->spacing) + 1);
		n = Min(n, WA_MAX_BATCH);
	}
	plan->batch_n = Min(n, budget);
	return true;
}

/*
 * After a batch: the next random delay (paced), or when to look again
 * (nothing was claimed).  A paced delay is uniform in [min, max], kept a
 * little inside the bounds so that scheduling jitter on either request
 * cannot push the gap the API sees outside them.
 */
static double
after_batch(const WaCycle *cy, const WaSendPlan *plan, int claimed, double now)
{
	if (claimed == 0)
	{
		double		at = cy->next_due > 0 ? cy->next_due : 0;

		set_activity("idle");
		report_state(at);
		return at > 0 ? at : now + WA_IDLE_RECHECK;
	}
	if (plan->paced)
	{
		double		margin = Min(0.05, (cy->max_delay - cy->min_delay) * 0.1);

		next_gap = cy->min_delay + margin +
			(cy->max_delay - cy->min_delay - 2 * margin) * rand_unit();
	}
	else
		next_gap = 0;
	return 0;
}

/* One dispatch decision; returns the time to wait until (0: go on now). */
static double
dispatch_once(void)
{
	WaCycle		cy;
	WaSendPlan	plan;
	double		now;
	double		until = 0;
	int			budget;
	int			claimed;

	resolve_captures();
	load_cycle(&cy);
	check_connection_if_due(&cy);
	now = wa_now();
	if (sending_blocked(&cy, now, &until))
		return until;
	budget = batch_budget(&cy, now, &until);
	if (budget <= 0)
		return until;
	if (!plan_sending(&cy, now, budget, &plan, &until))
		return until;

	if (window_count == 0)
		window_start = now;
	claimed = run_pipeline(&cy, &plan);
	window_count += claimed;
	return after_batch(&cy, &plan, claimed, now);
}

/*
 * Leaving for good: the launcher reads why in the slot and does not start
 * the worker again (exit 0: the postmaster does not report it).
 */
static void
leave(WaWorkerExit reason)
{
	wa_worker_set_exit(my_slot, reason);
	proc_exit(0);
}

/*
 * The launcher's probe: is the extension there (at any version)?  The
 * answer goes to shared memory; the probe exits.
 */
static void
probe(void)
{
	char		installed[64];

	pgstat_report_appname("wa_notify probe");
	wa_probe_report(MyDatabaseId, extension_state(installed, sizeof(installed)) != WA_EXT_MISSING);
	proc_exit(0);
}

/*
 * On a standby: wait for the promotion.  A worker of a database that is
 * not listed leaves when the extension is not there (checked once: a
 * standby cannot run CREATE EXTENSION; the launcher probes again after the
 * promotion).
 */
static void
wait_for_promotion(const WaWorkerArgs *args, bool *checked)
{
	char		installed[64];

	if (!args->listed && !*checked)
	{
		if (extension_state(installed, sizeof(installed)) == WA_EXT_MISSING)
			leave(WA_EXIT_NO_EXTENSION);
		*checked = true;
	}
	set_activity("standby: waiting for promotion");
	wait_until(wa_now() + 1.0);
}

/*
 * SIGTERM (launcher.c's handler): stop.  The postmaster's (a shutdown)
 * ends the worker with exit code 0; DROP DATABASE's (launcher.c) too; any
 * other (pg_terminate_backend()) with 1, and the launcher starts it again.
 */
void
wa_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	WaWorkerArgs args;
	bool		recovered = false;
	bool		standby_checked = false;
	char		installed[64];

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	wa_am_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	wa_install_sigterm_handler();
	BackgroundWorkerUnblockSignals();

	/* a database being dropped: never connect (no FATAL for a database gone) */
	if (wa_db_dropping(dboid))
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	if (args.probe)
		probe();
	pgstat_report_appname("wa_notify worker");
	my_slot = wa_worker_attach(dboid);
	if (my_slot == NULL)
		proc_exit(0);			/* another worker serves this database */
	srandom((unsigned int) (MyProcPid ^ (int) wa_now()));
	on_shmem_exit(wa_worker_detach, (Datum) 0);
	{
		char	   *dbname;

		StartTransactionCommand();
		dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
		CommitTransactionCommand();
		elog(LOG, "wa_notify worker started for database \"%s\"", dbname);
		pfree(dbname);
	}

	cycle_cxt = AllocSetContextCreate(TopMemoryContext, "wa_notify cycle",
									  ALLOCSET_DEFAULT_SIZES);
	client = wa_graph_client_create();

	while (!ShutdownRequestPending)
	{
		double		until;

		handle_signals();
		MemoryContextSwitchTo(cycle_cxt);
		MemoryContextReset(cycle_cxt);

		if (RecoveryInProgress())
		{
			recovered = false;
			wait_for_promotion(&args, &standby_checked);
			continue;
		}
		/*
		 * CREATE EXTENSION and ALTER EXTENSION ... UPDATE wake the worker at
		 * their commit (the update script asks for it), so it need not poll;
		 * DROP EXTENSION too (launcher.c's utility hook).
		 */
		switch (extension_state(installed, sizeof(installed)))
		{
			case WA_EXT_MISSING:
				if (!args.listed)
					leave(WA_EXIT_NO_EXTENSION);
				set_activity("waiting for CREATE EXTENSION wa_notify");
				recovered = false;
				wait_until(wa_now() + WA_IDLE_RECHECK);
				continue;
			case WA_EXT_OLD:
				set_activity("waiting for ALTER EXTENSION wa_notify UPDATE (installed %s, library %s)",
							 installed, WA_EXTVERSION);
				recovered = false;
				wait_until(wa_now() + WA_IDLE_RECHECK);
				continue;
			case WA_EXT_READY:
				break;
		}
		if (!recovered)
		{
			int			n;

			window_count = -1;
			begin_tx();
			exec_sql("SELECT wa_notify._dispatch_recover()", SPI_OK_SELECT);
			n = atoi(col(0, 1));
			end_tx();
			if (n > 0)
				elog(LOG, "wa_notify worker: %d message(s) left 'sending' by a previous worker recovered", n);
			recovered = true;
			reported_activity[0] = '\0';
			next_check_at = 0;
		}

		until = dispatch_once();
		if (until > 0 && !ShutdownRequestPending)
			wait_until(until);
	}
	if (wa_db_dropping(MyDatabaseId))
		leave(WA_EXIT_DATABASE_GOING);
	/* terminated by anyone but the postmaster: exit 1, the launcher restarts it */
	if (!wa_terminated_by_postmaster())
		elog(LOG, "wa_notify worker terminated: it restarts in a few seconds");
	proc_exit(wa_terminated_by_postmaster() ? 0 : 1);
}
