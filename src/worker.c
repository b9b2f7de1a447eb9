/*-------------------------------------------------------------------------
 * worker.c
 *	  The dispatcher: the background worker's main loop.  It connects to
 *	  wa_notify.database, idles on a hot standby and while the extension is
 *	  missing, recovers messages a dead worker left 'sending' (review under
 *	  at_most_once, queued under at_least_once), and then, cycle after
 *	  cycle: resolves captured messages (wa_notify._resolve_pending()),
 *	  takes the settings snapshot (wa_notify._dispatch_cycle(): expiry,
 *	  holds, pause state), decides whether and when it may send (master
 *	  switch, account pause, cool-down, quiet hours, per-batch cap, random
 *	  delay, rate cap), claims a batch in one transaction, sends it through
 *	  the libcurl multi client (graph.c) with at most max_in_flight requests
 *	  in flight, and records the batch's outcomes in one transaction
 *	  (wa_notify._record()), classified by graph_errors.c.
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
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "wa_notify.h"
#include "graph.h"
#include "graph_errors.h"

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

/* The per-cycle snapshot (wa_notify._dispatch_cycle()). */
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
	int			max_in_flight;
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

static void
wa_worker_detach(int code, Datum arg)
{
	if (client)
		wa_graph_abort_all(client);
	if (wa_shared && wa_shared->worker_latch == &MyProc->procLatch)
	{
		wa_shared->worker_latch = NULL;
		wa_shared->worker_pid = 0;
	}
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
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   (long) ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		if (wa_shared)
			pg_atomic_fetch_add_u64(&wa_shared->wakes_seen, 1);
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

/* Settings snapshot + housekeeping, one transaction. */
static void
load_cycle(WaCycle *cy)
{
	MemoryContext old;

	begin_tx();
	{
		Oid			t = BOOLOID;
		Datum		v = BoolGetDatum(window_count < 0);

		/* ready: the token is where secrets.c reads it (file or row) */
		if (SPI_execute_with_args("SELECT enabled, coalesce(phone_number_id, '') <> '' "
			 "  AND wa_notify._secret_available('access_token'), use_templates, "
			 "  api_base_url || '/' || api_version || '/' || coalesce(phone_number_id, '') || '/messages', "
			 "  min_delay, max_delay, max_per_batch, polling_interval, max_rate, max_in_flight, "
			 "  recipient_gap, daily_recipient_limit, extract(epoch FROM quiet_until), "
			 "  paused_reason, paused_code, extract(epoch FROM pause_until), rate_factor, "
			 "  settings_version, extract(epoch FROM next_due), sent_in_window, "
			 "  extract(epoch FROM window_first) "
			 "FROM wa_notify._dispatch_cycle($1)", 1, &t, &v, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "wa_notify worker: _dispatch_cycle() failed");
	}
	if (SPI_processed != 1)
		elog(ERROR, "wa_notify worker: _dispatch_cycle() returned no row");
	old = MemoryContextSwitchTo(cycle_cxt);
	cy->enabled = strcmp(col(0, 1), "t") == 0;
	cy->ready = strcmp(col(0, 2), "t") == 0;
	cy->use_templates = strcmp(col(0, 3), "t") == 0;
	cy->url = col(0, 4);
	cy->min_delay = col_f(0, 5);
	cy->max_delay = col_f(0, 6);
	cy->max_per_batch = (int) col_f(0, 7);
	cy->polling_interval = col_f(0, 8);
	cy->max_rate = col_f(0, 9);
	cy->max_in_flight = (int) col_f(0, 10);
	cy->recipient_gap = col_f(0, 11);
	cy->daily_limit = (int) col_f(0, 12);
	cy->quiet_until = col_f(0, 13);
	cy->paused_reason = col(0, 14);
	cy->paused_code = (int) col_f(0, 15);
	cy->pause_until = col_f(0, 16);
	cy->rate_factor = col_f(0, 17);
	cy->settings_version = col(0, 18);
	cy->next_due = col_f(0, 19);
	cy->sent_in_window = (int) col_f(0, 20);
	cy->window_first = col_f(0, 21);
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

static const WaGraphError *
classify(WaGraphRequest *r)
{
	if (r->curl_code != 0)
		return wa_graph_error_lookup(-1, 0);
	if (r->graph_code >= 0)
		return wa_graph_error_lookup(r->graph_code, (int) r->http_status);
	if (r->http_status >= 200 && r->http_status < 300)
	{
		if (r->wamid != NULL)
			return wa_graph_error_lookup(-1, (int) r->http_status);
		return wa_graph_error_lookup(-1, 502);	/* a 2xx that is no answer */
	}
	return wa_graph_error_lookup(-1, (int) r->http_status);
}

static void
json_kv(StringInfo b, const char *k, const char *v, bool comma)
{
	if (comma)
		appendStringInfoChar(b, ',');
	escape_json(b, k);
	appendStringInfoChar(b, ':');
	if (v)
		escape_json(b, v);
	else
		appendStringInfoString(b, "null");
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
	StringInfoData b;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		vals[2];
	int			count = 0;
	WaChunk   **pp;

	initStringInfo(&b);
	appendStringInfoChar(&b, '[');
	for (WaChunk *ch = *head; ch; ch = ch->next)
		for (int i = 0; i < ch->n; i++)
		{
			WaItem	   *it = &ch->items[i];

			if (it->recorded)
				continue;
			if (it->attempted ? !it->finished : !(it->finished || final))
				continue;
			it->recorded = true;
			ch->left--;
			if (count++ > 0)
				appendStringInfoChar(&b, ',');
			appendStringInfo(&b, "{\"id\":" INT64_FORMAT ",\"attempted\":%s",
							 it->req.id, it->attempted ? "true" : "false");
			if (it->attempted)
			{
				appendStringInfo(&b, ",\"http\":%ld", it->req.http_status);
				if (it->req.graph_code >= 0)
					appendStringInfo(&b, ",\"code\":%d", it->req.graph_code);
				json_kv(&b, "class", wa_error_class_name(it->err->cls), true);
				json_kv(&b, "error", it->req.error, true);
				json_kv(&b, "wamid", it->req.wamid, true);
				json_kv(&b, "wa_id", it->req.wa_id, true);
				json_kv(&b, "blacklist", it->err->blacklist_source, true);
				json_kv(&b, "title", it->err->title, true);
				json_kv(&b, "hint", it->err->hint, true);
			}
			else
				json_kv(&b, "class", "not_attempted", true);
			appendStringInfoChar(&b, '}');
		}
	appendStringInfoChar(&b, ']');

	if (count > 0)
	{
		begin_tx();
		vals[0] = CStringGetTextDatum(b.data);
		vals[1] = Int32GetDatum(WA_MAX_ATTEMPTS);
		if (SPI_execute_with_args("SELECT wa_notify._record($1::jsonb, $2)",
								  2, types, vals, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "wa_notify worker: could not record outcomes");
		end_tx();
	}
	pfree(b.data);

	/* free chunks whose every item is recorded (or can never be) */
	pp = head;
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
 * cycle re-reads settings.  Returns how many messages were claimed.
 */
#define WA_PIPELINE_SECS 2.0

/* What the pipeline loop hands back to run_pipeline (which records it). */
typedef struct WaPipeline
{
	WaChunk    *head;			/* chunks with outcomes not yet recorded */
	int			claimed;		/* messages claimed */
} WaPipeline;

static void
pipeline_loop(WaPipeline *pl, WaCycle *cy, bool paced, int in_flight, double spacing,
			  double start_at, int budget, int chunk_n)
{
	WaChunk    *head = NULL;
	WaChunk    *tail = NULL;
	WaGraphRequest **done = palloc(sizeof(WaGraphRequest *) * Max(in_flight, 1));
	int			claimed = 0;
	int			unstarted = 0;
	int			unrecorded = 0;
	int			finished = 0;
	bool		stop = false;
	bool		exhausted = false;
	bool		configured = false;
	double		t0 = wa_now();
	double		shutdown_at = 0;
	double		next_start = start_at;
	WaChunk    *cur = NULL;		/* next item to start: cur->items[pos] */
	int			pos = 0;

	{
		for (;;)
		{
			double		now = wa_now();
			long		timeout = 100;
			int			k;

			if (ShutdownRequestPending && !stop)
			{
				stop = true;
				shutdown_at = now;
			}

			/* nothing left to start: claim the next batch */
			if (!stop && !exhausted && budget > 0 &&
				(unstarted == 0 || (!paced && unstarted <= in_flight / 2)) &&
				(claimed == 0 || (!paced && now - t0 < WA_PIPELINE_SECS)))
			{
				char	   *token = NULL;
				WaChunk    *ch = claim(cy, Min(chunk_n, budget), &token);

				if (!configured && ch->n > 0)
				{
					wa_graph_client_configure(client, token ? token : "", cy->url, in_flight,
											  Min(10000L, wa_request_timeout * 1000L),
											  wa_request_timeout * 1000L);
					configured = true;
				}
				if (token)
					explicit_bzero(token, strlen(token));
				if (ch->n == 0)
				{
					MemoryContextDelete(ch->cxt);
					exhausted = true;
				}
				else
				{
					if (tail)
						tail->next = ch;
					else
						head = ch;
					tail = ch;
					if (cur == NULL)
					{
						cur = ch;
						pos = 0;
					}
					claimed += ch->n;
					budget -= ch->n;
					unstarted += ch->n;
				}
				if (paced)
					exhausted = true;
				now = wa_now();
			}

			/* start what we may */
			while (!stop && cur && unstarted > 0 && wa_graph_in_flight(client) < in_flight)
			{
				WaItem	   *it;

				if (pos >= cur->n)
				{
					cur = cur->next;
					pos = 0;
					continue;
				}
				it = &cur->items[pos];
				if (it->attempted || it->finished)
				{
					pos++;
					continue;
				}
				if (now < next_start)
				{
					double		ms = (next_start - now) * 1000.0;

					if (wa_graph_in_flight(client) == 0 && ms < 200)
					{
						nap((long) ms);
						now = wa_now();
						continue;
					}
					timeout = Max(1, Min(timeout, (long) ms));
					break;
				}
				if (!wa_graph_start(client, &it->req))
					break;
				it->attempted = true;
				unstarted--;
				last_start = now = wa_now();
				next_start = spacing > 0 ? now + spacing : now;
				pos++;
			}

			if (wa_graph_in_flight(client) == 0 &&
				(stop || (unstarted == 0 && (exhausted || budget <= 0 ||
											 paced || now - t0 >= WA_PIPELINE_SECS))))
				break;
			if (shutdown_at > 0 && now - shutdown_at > WA_SHUTDOWN_GRACE)
				break;

			if (wa_graph_in_flight(client) > 0)
				k = wa_graph_wait(client, timeout, done, in_flight);
			else
			{
				k = 0;
				if (unstarted > 0)
					nap(Min(timeout, 100));
			}
			for (int i = 0; i < k; i++)
			{
				WaItem	   *it = (WaItem *) done[i];

				it->finished = true;
				it->err = classify(&it->req);
				finished++;
				unrecorded++;
				switch (it->err->cls)
				{
					case WA_ERR_ACCOUNT:
					case WA_ERR_THROTTLED:
						stop = true;
						break;
					case WA_ERR_TEMPLATE:
						unstarted -= skip_unstarted(head, it->event, NULL);
						break;
					case WA_ERR_PAIR_RATE:
						unstarted -= skip_unstarted(head, NULL, it->phone);
						break;
					default:
						break;
				}
			}
			if (k > 0)
				set_activity("sending %d/%d", finished, claimed);
			if (unrecorded >= Max(in_flight, 64) && !stop)
			{
				record(&head, false);
				unrecorded = 0;
				/* chunks may have been freed: re-find the cursor and tail */
				tail = head;
				while (tail && tail->next)
					tail = tail->next;
				if (cur)
				{
					bool		alive = false;

					for (WaChunk *ch = head; ch; ch = ch->next)
						if (ch == cur)
							alive = true;
					if (!alive)
					{
						cur = head;
						pos = 0;
					}
				}
			}
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
		}
	}
	pl->head = head;
	pl->claimed = claimed;
}

/*
 * Run the pipeline; whatever happens, no request stays in flight.  The loop
 * is a function of its own so that no local variable lives across the
 * PG_TRY's setjmp.
 */
static int
run_pipeline(WaCycle *cy, bool paced, int in_flight, double spacing,
			 double start_at, int budget, int chunk_n)
{
	WaPipeline *pl = palloc0(sizeof(WaPipeline));
	int			claimed;

	PG_TRY();
	{
		pipeline_loop(pl, cy, paced, in_flight, spacing, start_at, budget, chunk_n);
	}
	PG_FINALLY();
	{
		wa_graph_abort_all(client);
	}
	PG_END_TRY();
	record(&pl->head, true);
	/* anything left (answers that never came at shutdown) stays 'sending' */
	while (pl->head)
	{
		WaChunk    *ch = pl->head;

		pl->head = ch->next;
		MemoryContextDelete(ch->cxt);
	}
	claimed = pl->claimed;
	pfree(pl);
	return claimed;
}

/* One dispatch decision; returns the time to wait until (0: go on now). */
static double
dispatch_once(void)
{
	WaCycle		cy;
	double		now;
	double		spacing = 0;
	int			in_flight;
	int			budget;
	int			n;
	bool		paced;
	double		start_at;
	int			k;

	/* captured messages: resolved whatever else happens */
	begin_tx();
	exec_sql("SELECT wa_notify._resolve_pending()", SPI_OK_SELECT);
	end_tx();

	load_cycle(&cy);
	now = wa_now();

	if (cy.ready &&
		(now >= next_check_at ||
		 last_settings_version == NULL ||
		 (cy.settings_version && strcmp(cy.settings_version, last_settings_version) != 0)))
	{
		free(last_settings_version);
		last_settings_version = strdup(cy.settings_version ? cy.settings_version : "");
		connection_check();
		load_cycle(&cy);
		now = wa_now();
	}

	if (!cy.ready)
	{
		set_activity("idle: access_token or phone_number_id not configured");
		report_state(0);
		return now + WA_IDLE_RECHECK;
	}
	if (!cy.enabled)
	{
		set_activity("paused: master switch off (enabled = false)");
		report_state(0);
		return now + WA_IDLE_RECHECK;
	}
	if (cy.paused_reason)
	{
		set_activity("paused: %s", cy.paused_reason);
		report_state(0);
		return Min(now + WA_IDLE_RECHECK, next_check_at);
	}
	if (cy.pause_until > now)
	{
		set_activity("paused until %s: spam rate limit cool-down (131048)", time_str(cy.pause_until));
		report_state(cy.pause_until);
		return cy.pause_until;
	}
	if (cy.quiet_until > now)
	{
		set_activity("quiet hours until %s", time_str(cy.quiet_until));
		report_state(cy.quiet_until);
		return cy.quiet_until;
	}
	/*
	 * Per-batch cap: at most max_per_batch claims per polling interval.  The
	 * interval opens at its first claim; after a restart it is seeded from
	 * the claims the database remembers.
	 */
	if (window_count < 0)
	{
		window_count = cy.sent_in_window;
		window_start = cy.window_first > 0 ? cy.window_first : now;
	}
	if (now >= window_start + cy.polling_interval)
	{
		window_start = now;
		window_count = 0;
	}
	budget = cy.max_per_batch - window_count;
	if (budget <= 0)
	{
		double		at = window_start + cy.polling_interval;

		set_activity("batch cap reached (%d/%d): next batch at %s",
					 window_count, cy.max_per_batch, time_str(at));
		report_state(at);
		return at;
	}

	/* pacing */
	paced = cy.max_delay > 0;
	in_flight = cy.max_in_flight;
	if (cy.max_rate > 0)
		spacing = 1.0 / (cy.max_rate * cy.rate_factor);
	else if (cy.rate_factor < 1.0)
		in_flight = Max(1, (int) (in_flight * cy.rate_factor));
	if (paced)
	{
		double		gap = Max(next_gap, spacing);

		start_at = last_start + gap;
		if (now < start_at - WA_CLAIM_AHEAD)
		{
			set_activity("waiting %.1f s", start_at - now);
			report_state(start_at);
			return start_at - WA_CLAIM_AHEAD;
		}
		n = 1;
		in_flight = 1;
	}
	else
	{
		start_at = spacing > 0 ? last_start + spacing : now;
		n = Min(budget, Max(in_flight * 2, 64));
		if (spacing > 0)
			n = Min(n, (int) ceil(1.0 / spacing) + 1);
		n = Min(n, WA_MAX_BATCH);
	}
	n = Min(n, budget);

	if (window_count == 0)
		window_start = now;
	k = run_pipeline(&cy, paced, in_flight, spacing, start_at, budget, n);
	window_count += k;
	if (k == 0)
	{
		double		at = cy.next_due > 0 ? cy.next_due : 0;

		set_activity("idle");
		report_state(at);
		return at > 0 ? at : now + WA_IDLE_RECHECK;
	}
	if (paced)
	{
		/*
		 * A uniform delay in [min, max], kept a little inside the bounds so
		 * that scheduling jitter on either request cannot push the gap the
		 * API sees outside them.
		 */
		double		margin = Min(0.05, (cy.max_delay - cy.min_delay) * 0.1);

		next_gap = cy.min_delay + margin +
			(cy.max_delay - cy.min_delay - 2 * margin) * rand_unit();
	}
	else
		next_gap = 0;
	return 0;
}

/*
 * SIGTERM: stop, and remember whether the postmaster sent it (a shutdown)
 * or someone else did (pg_terminate_backend()).  The postmaster restarts a
 * background worker that exits non-zero, never one that exits 0, so only a
 * shutdown ends the worker with 0 (see wa_worker_main's end).
 */
static volatile sig_atomic_t terminated_by_postmaster = false;

static void
wa_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;

	if (info != NULL && info->si_pid == PostmasterPid)
		terminated_by_postmaster = true;
	ShutdownRequestPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
install_sigterm_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = wa_sigterm;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
}

void
wa_worker_main(Datum main_arg)
{
	bool		recovered = false;
	char		installed[64];

	wa_am_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	install_sigterm_handler();
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(wa_database, NULL, 0);
	pgstat_report_appname("wa_notify worker");
	srandom((unsigned int) (MyProcPid ^ (int) wa_now()));

	if (wa_shared)
	{
		wa_shared->worker_latch = &MyProc->procLatch;
		wa_shared->worker_pid = MyProcPid;
		wa_shared->worker_started_at = GetCurrentTimestamp();
		pg_atomic_fetch_add_u64(&wa_shared->worker_starts, 1);
	}
	on_shmem_exit(wa_worker_detach, (Datum) 0);
	elog(LOG, "wa_notify worker started for database \"%s\"", wa_database);

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
			set_activity("standby: waiting for promotion");
			recovered = false;
			wait_until(wa_now() + 1.0);
			continue;
		}
		/*
		 * CREATE EXTENSION and ALTER EXTENSION ... UPDATE wake the worker at
		 * their commit (the update script asks for it), so it need not poll.
		 */
		switch (extension_state(installed, sizeof(installed)))
		{
			case WA_EXT_MISSING:
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
	/* terminated by anyone but the postmaster: exit 1, so that it restarts */
	if (!terminated_by_postmaster)
		elog(LOG, "wa_notify worker terminated: it restarts in a few seconds");
	proc_exit(terminated_by_postmaster ? 0 : 1);
}
