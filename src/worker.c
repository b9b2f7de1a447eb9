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
 *	  takes the typed settings snapshot (settings.c), the cycle's state
 *	  (wa_notify._dispatch_cycle(): expiry, holds, quiet hours) and the
 *	  senders (wa_notify._dispatch_senders(): each sender's URL, caps, pause
 *	  state; src/sql/1.1/25_senders.sql), decides whether and when each
 *	  sender may send (master switch and quiet hours for all; account pause,
 *	  cool-down, rate cap, random delay per sender; the per-batch cap for
 *	  all), claims batches per sender, sends them side by side through the
 *	  libcurl multi client (graph.c: each request with its sender's URL and
 *	  token) with at most the sender's max_in_flight requests in flight,
 *	  and records the outcomes in one transaction
 *	  (wa_notify._record(), typed arrays), classified by graph_errors.c.
 *	  The class decides only what happens to the rest of the batch here
 *	  (apply_to_batch()); what an error does to the database is
 *	  wa_notify._apply_error()'s (src/sql/1.1/30_dispatch.sql), the same
 *	  function the webhook calls.  dispatch_once() and the send loop
 *	  (pipeline_loop()) are lists of named steps, below them.  Between two
 *	  decisions, maintain_if_due() runs the history's upkeep
 *	  (wa_notify.maintain(): retention, anonymization, the archive) hourly.
 *
 *	  Also here: the GUC wa_notify.request_timeout.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

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
#include "replication/syncrep.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
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
#define WA_RATE_BURST			0.05	/* rate cap: starts a pause may save up, s of the rate */
#define WA_SHUTDOWN_GRACE		3.0		/* in-flight requests on SIGTERM, s */
#define WA_MAX_BATCH			2000
#define WA_REVIEW_RECHECK		1.0		/* review requeue check, at most every s */

#define WA_MAX_SENDERS			256		/* senders served by one worker */

struct WaLane;

/* One claimed message on its way. */
typedef struct WaItem
{
	WaGraphRequest req;			/* first: completed pointers cast back */
	struct WaLane *lane;		/* its sender's lane */
	char	   *phone;
	char	   *event;
	bool		attempted;		/* request started */
	bool		finished;		/* outcome known (or skipped: not attempted) */
	bool		recorded;		/* outcome written */
	const WaGraphError *err;	/* classification (NONE: ok) */
} WaItem;

/*
 * A claimed batch lives in its own memory context until every outcome in
 * it is recorded, so that a long run of batches holds only the batches
 * still in flight.
 */
typedef struct WaChunk
{
	MemoryContext cxt;
	WaItem	   *items;
	int			n;
	int			left;			/* items not recorded yet */
	struct WaChunk *next;
} WaChunk;

/* What the worker remembers of a sender from one cycle to the next. */
typedef struct WaSenderMemory
{
	char		sender[64];
	double		last_start;		/* when its last request started */
	double		next_gap;		/* the random delay before its next one */
	double		rate_tokens;	/* its rate cap's bucket (rate_allows) */
	double		rate_at;		/* when the bucket was last filled; 0: never */
	WaResponseTime response_time;	/* of its answers (auto max_in_flight) */
} WaSenderMemory;

/*
 * One sender in a cycle ("lane"): its configuration and state, read from
 * wa_notify._dispatch_senders() (a NULL column there is the setting's
 * value already), its plan for this cycle, and its batches in the
 * pipeline.  Senders are drained side by side in one pipeline, each within
 * its own caps, so that a slow, throttled or paused sender never delays
 * another's messages.
 */
typedef struct WaLane
{
	/* from _dispatch_senders() */
	char	   *sender;
	char	   *url;			/* {base}/{version}/{pnid}/messages */
	bool		ready;			/* phone number ID and token set */
	WaPacing	pacing;			/* rate (0: no cap) and in-flight size (in_flight.c) */
	int			daily_limit;	/* its portfolio's, 0: none */
	char	   *paused_reason;	/* NULL: not paused */
	double		pause_until;	/* 0: none */
	double		rate_factor;
	char	   *throughput_level;
	WaSenderMemory *memory;
	/* the plan (plan_sending) */
	bool		due;			/* sends in this cycle */
	int			in_flight_cap;
	double		spacing;		/* rate cap: seconds between starts, on average (0: none) */
	int			batch_n;		/* messages per claim */
	/* the pipeline */
	WaGraphAuth *auth;			/* malloc'd at its first claim, freed at the end */
	WaChunk    *head;			/* batches with outcomes not yet recorded */
	WaChunk    *tail;
	WaChunk    *cur;			/* next item to start: cur->items[pos] */
	int			pos;
	int			claimed;
	int			unstarted;		/* claimed, neither started nor skipped */
	int			in_flight;
	int			answered;		/* answers in this cycle (occupancy) */
	double		sized_at;		/* when in_flight_cap was last sized */
	int			answered_at_size;	/* answered, then */
	bool		stop;			/* start nothing more of this sender */
	bool		exhausted;		/* its queue had nothing more to claim */
	double		exhausted_at;	/* when it last found it empty */
	double		next_start;		/* pacing: its next request not before */
} WaLane;

/*
 * What one cycle runs on: settings from the typed snapshot (settings.c),
 * state computed by wa_notify._dispatch_cycle(), and the senders' lanes.
 * Loaded by load_cycle().
 */
typedef struct WaCycle
{
	bool		enabled;
	bool		ready;			/* some sender is ready */
	bool		use_templates;
	double		min_delay;
	double		max_delay;
	int			max_per_batch;
	double		polling_interval;
	double		recipient_gap;
	double		quiet_until;	/* 0: none */
	char	   *settings_version;
	double		next_due;		/* 0: none */
	int			sent_in_window; /* at start only */
	double		window_first;	/* oldest claim in the window (at start) */
	int			nlanes;
	WaLane	   *lanes;
} WaCycle;

static MemoryContext cycle_cxt = NULL;
static WaGraphClient *client = NULL;
static WaSenderMemory sender_memory[WA_MAX_SENDERS];
static int	n_sender_memory = 0;
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

static WaDbSlot *my_slot = NULL;	/* this database's slot (launcher.c) */

/*
 * Each request in flight holds a socket, outside PostgreSQL's own file
 * accounting: several senders at their full auto size (up to 512 each,
 * in_flight.c) need more than the usual soft limit of 1024 descriptors,
 * and every socket() refused there fails a request (four senders at about
 * 250 each lost most of their requests in the benchmark, most likely at
 * the mock's own limit: the worker's is the same).  The worker lifts its
 * own soft limit to the hard one.
 */
static void
raise_open_files_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			elog(DEBUG1, "wa_notify worker: could not raise its open files limit: %m");
	}
}

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
	/*
	 * After a shutdown request the synchronous standby may be gone (a
	 * failover is under way): commit without waiting for it, so that the
	 * shutdown cannot hang (a clean shutdown still streams the WAL).
	 */
	if (ShutdownRequestPending)
		SetConfigOption("synchronous_commit", "local", PGC_USERSET, PGC_S_SESSION);
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

/* The worker's memory of a sender, found or made (a full table: the last slot is shared). */
static WaSenderMemory *
sender_memory_of(const char *sender)
{
	for (int i = 0; i < n_sender_memory; i++)
		if (strcmp(sender_memory[i].sender, sender) == 0)
			return &sender_memory[i];
	if (n_sender_memory < WA_MAX_SENDERS)
	{
		WaSenderMemory *m = &sender_memory[n_sender_memory++];

		strlcpy(m->sender, sender, sizeof(m->sender));
		m->last_start = m->next_gap = 0;
		memset(&m->response_time, 0, sizeof(m->response_time));
		return m;
	}
	return &sender_memory[WA_MAX_SENDERS - 1];
}

/*
 * A sender's rate and in-flight size: the defaults as its number's
 * throughput level applies them (in_flight.c), its own max_rate when it
 * sets one, its max_in_flight (0: auto).
 */
static void
lane_pacing(WaLane *ln, double max_rate, bool max_rate_inherited, int max_in_flight)
{
	wa_pacing_for_level(wa_settings(), ln->throughput_level, &ln->pacing);
	if (!max_rate_inherited)
		ln->pacing.max_rate = max_rate;
	ln->pacing.max_in_flight = Max(max_in_flight, 0);
}

/* The senders that may send, from wa_notify._dispatch_senders() (by column name). */
static void
load_lanes(WaCycle *cy, const char *api_base_url)
{
	MemoryContext old;

	if (SPI_execute("SELECT sender, phone_number_id, api_version, ready, max_rate, max_rate_inherited, "
					"  max_in_flight, daily_recipient_limit, paused_reason, pause_until, rate_factor, "
					"  throughput_level "
					"FROM wa_notify._dispatch_senders()", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify worker: _dispatch_senders() failed");
	old = MemoryContextSwitchTo(cycle_cxt);
	cy->nlanes = (int) Min(SPI_processed, WA_MAX_SENDERS);
	cy->lanes = palloc0(sizeof(WaLane) * Max(cy->nlanes, 1));
	cy->ready = false;
	for (int r = 0; r < cy->nlanes; r++)
	{
		WaLane	   *ln = &cy->lanes[r];
		char	   *pnid = col(r, col_number("phone_number_id"));

		ln->sender = col(r, col_number("sender"));
		ln->url = psprintf("%s/%s/%s/messages", api_base_url,
						   col(r, col_number("api_version")), pnid ? pnid : "");
		ln->ready = strcmp(col(r, col_number("ready")), "t") == 0;
		ln->throughput_level = col(r, col_number("throughput_level"));
		lane_pacing(ln, col_f(r, col_number("max_rate")),
					strcmp(col(r, col_number("max_rate_inherited")), "t") == 0,
					(int) col_f(r, col_number("max_in_flight")));
		ln->daily_limit = (int) col_f(r, col_number("daily_recipient_limit"));
		ln->paused_reason = col(r, col_number("paused_reason"));
		ln->pause_until = col_f(r, col_number("pause_until"));
		ln->rate_factor = col_f(r, col_number("rate_factor"));
		if (ln->rate_factor <= 0 || ln->rate_factor > 1)
			ln->rate_factor = 1;
		ln->memory = sender_memory_of(ln->sender);
		cy->ready = cy->ready || ln->ready;
	}
	MemoryContextSwitchTo(old);
	if (SPI_processed > WA_MAX_SENDERS)
		elog(WARNING, "wa_notify worker: %d senders are enabled, only the first %d are served",
			 (int) SPI_processed, WA_MAX_SENDERS);
}

/*
 * One transaction: the settings snapshot (settings.c, typed, by name), the
 * cycle's housekeeping and computed state (wa_notify._dispatch_cycle(),
 * read by column name), and the senders (load_lanes).
 */
static void
load_cycle(WaCycle *cy)
{
	const WaSettings *set;
	MemoryContext old;
	Oid			t = BOOLOID;
	Datum		v = BoolGetDatum(window_count < 0);
	char	   *base;

	begin_tx();
	set = wa_settings();
	old = MemoryContextSwitchTo(cycle_cxt);
	cy->enabled = set->enabled;
	cy->use_templates = set->use_templates;
	cy->polling_interval = set->polling_interval;
	cy->recipient_gap = set->recipient_gap;
	base = pstrdup(set->api_base_url ? set->api_base_url : "");
	MemoryContextSwitchTo(old);

	if (SPI_execute_with_args("SELECT extract(epoch FROM quiet_until) AS quiet_until, "
							  "  settings_version, extract(epoch FROM next_due) AS next_due, "
							  "  sent_in_window, extract(epoch FROM window_first) AS window_first, "
							  "  (SELECT throughput_level FROM wa_notify.state) AS throughput_level "
							  "FROM wa_notify._dispatch_cycle($1)", 1, &t, &v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify worker: _dispatch_cycle() failed");
	if (SPI_processed != 1)
		elog(ERROR, "wa_notify worker: _dispatch_cycle() returned no row");
	old = MemoryContextSwitchTo(cycle_cxt);
	cy->quiet_until = col_f_named("quiet_until");
	cy->settings_version = col_named("settings_version");
	cy->next_due = col_f_named("next_due");
	cy->sent_in_window = (int) col_f_named("sent_in_window");
	cy->window_first = col_f_named("window_first");
	/*
	 * The human-like delays and the per-batch cap are the cycle's, all
	 * senders together: their defaults follow the default number's
	 * throughput level (in_flight.c).
	 */
	{
		WaPacing	pacing;

		wa_pacing_for_level(set, col_named("throughput_level"), &pacing);
		cy->min_delay = pacing.min_delay;
		cy->max_delay = pacing.max_delay;
		cy->max_per_batch = pacing.max_per_batch;
	}
	MemoryContextSwitchTo(old);
	load_lanes(cy, base);
	end_tx();
}

/* Each ready sender's connection check (its quality, tier and throughput). */
static void
connection_check(void)
{
	set_activity("checking the connection");
	begin_tx();
	exec_sql("SELECT c.api_status FROM wa_notify._dispatch_senders() d, "
			 "  LATERAL wa_notify.check_connection(d.sender) c WHERE d.ready", SPI_OK_SELECT);
	end_tx();
	next_check_at = wa_now() + WA_CHECK_INTERVAL;
}

/*
 * Claim up to n messages of one sender (one transaction); at its first
 * claim, the sender's token becomes its Authorization header (graph.c).
 */
static WaChunk *
claim(const WaCycle *cy, WaLane *ln, int n)
{
	Oid			types[4] = {INT4OID, FLOAT8OID, INT4OID, TEXTOID};
	Datum		vals[4];
	WaChunk    *ch;
	MemoryContext cxt;
	MemoryContext old;
	int			got;

	cxt = AllocSetContextCreate(cycle_cxt, "wa_notify batch", ALLOCSET_DEFAULT_SIZES);
	ch = MemoryContextAllocZero(cxt, sizeof(WaChunk));
	ch->cxt = cxt;

	begin_tx();
	if (ln->auth == NULL)
	{
		char	   *token = wa_secret_get(ln->sender, "access_token");	/* file or row: secrets.c */

		ln->auth = wa_graph_auth_create(token ? token : "");
		if (token)
			explicit_bzero(token, strlen(token));
	}
	vals[0] = Int32GetDatum(n);
	vals[1] = Float8GetDatum(cy->recipient_gap);
	vals[2] = Int32GetDatum(ln->daily_limit);
	vals[3] = CStringGetTextDatum(ln->sender);
	if (SPI_execute_with_args("SELECT id, phone, event, body FROM wa_notify._claim($1, $2, $3, $4)",
							  4, types, vals, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify worker: could not claim messages");
	got = (int) SPI_processed;
	old = MemoryContextSwitchTo(cxt);
	ch->items = palloc0(sizeof(WaItem) * Max(got, 1));
	for (int i = 0; i < got; i++)
	{
		WaItem	   *it = &ch->items[i];

		it->lane = ln;
		it->req.id = strtoll(col(i, 1), NULL, 10);
		it->phone = col(i, 2);
		it->event = col(i, 3);
		it->req.body = col(i, 4);
		it->req.url = ln->url;
		it->req.auth = ln->auth;
		it->req.graph_code = -1;
		it->req.cxt = cxt;
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

/* Collect the outcomes ready to be written (every sender's), marking their items recorded. */
static void
collect_outcomes(WaLane *lanes, int nlanes, bool final, WaOutcomes *o)
{
	int			cap = 0;

	for (int l = 0; l < nlanes; l++)
		for (WaChunk *ch = lanes[l].head; ch; ch = ch->next)
			cap += ch->n;
	o->n = 0;
	for (int c = 0; c < OUT_NCOLS; c++)
	{
		o->values[c] = palloc(sizeof(Datum) * Max(cap, 1));
		o->nulls[c] = palloc(sizeof(bool) * Max(cap, 1));
	}
	for (int l = 0; l < nlanes; l++)
		for (WaChunk *ch = lanes[l].head; ch; ch = ch->next)
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
record(WaLane *lanes, int nlanes, bool final)
{
	WaOutcomes	o;

	collect_outcomes(lanes, nlanes, final, &o);
	if (o.n > 0)
		write_outcomes(&o);
	for (int c = 0; c < OUT_NCOLS; c++)
	{
		pfree(o.values[c]);
		pfree(o.nulls[c]);
	}
	for (int l = 0; l < nlanes; l++)
		free_recorded_chunks(&lanes[l].head, final);
}

/* mark the not-yet-started items matching event or phone (any sender's) as skipped for now */
static void
skip_unstarted(WaLane *lanes, int nlanes, const char *event, const char *phone)
{
	for (int l = 0; l < nlanes; l++)
		for (WaChunk *ch = lanes[l].head; ch; ch = ch->next)
			for (int i = 0; i < ch->n; i++)
			{
				WaItem	   *it = &ch->items[i];

				if (it->attempted || it->finished)
					continue;
				if ((event && strcmp(it->event, event) == 0) ||
					(phone && strcmp(it->phone, phone) == 0))
				{
					it->finished = true;	/* back to the queue, not attempted */
					it->lane->unstarted--;
				}
			}
}

/*
 * Claim, send and record, overlapping the claim and record transactions
 * with the requests in flight: while requests are out, a sender's next
 * batch is claimed as soon as little of its last is left to start, and
 * outcomes are recorded as soon as enough are known.  The senders' lanes
 * share the pool of connections; each starts requests within its own rate
 * and in-flight caps, in turn (start_requests), so that none waits for
 * another.  Paced sending (delays) claims one message per sender.  New
 * batches are claimed for at most WA_PIPELINE_SECS, then the caller's cycle
 * re-reads settings.
 */
#define WA_PIPELINE_SECS 2.0
#define WA_RECORD_EVERY	0.25	/* known outcomes wait at most this long, s */
#define WA_RECORD_SHARE	4		/* ... and a record takes 1/4 of the sizes at most */
#define WA_LOOK_AGAIN_SECS 0.5	/* an empty queue, while others are in flight */
#define WA_RESIZE_SECS	1.0		/* an auto in-flight size is sized again after, s */

/* The pipeline's state, for its steps below. */
typedef struct WaPipeline
{
	WaCycle    *cy;
	bool		paced;			/* one message at a time, random delays */
	int			budget;			/* claims still allowed (per-batch cap) */
	int			in_flight_cap;	/* the sum of the lanes' */
	int			pool;			/* the most they may grow to (the client's size) */
	WaGraphRequest **done;		/* completed requests, from wa_graph_wait */
	int			claimed;		/* messages claimed */
	int			unrecorded;		/* finished since the last record() */
	int			finished;
	bool		stop;			/* start nothing more (shutdown) */
	double		t0;
	double		recorded_at;	/* the last record_progress() (or t0) */
	double		shutdown_at;	/* SIGTERM seen (0: not) */
} WaPipeline;

/*
 * Before a claim and before each request: stop at once when the postmaster
 * is gone (kill -9, the OOM killer) or a shutdown cancelled a commit's wait
 * for the synchronous standby (wa_sigterm).  In both cases the last commits
 * may exist on this server only, so a message sent now would be queued
 * again on the server that takes over; what was claimed before stays
 * 'sending' there and goes to review.  (PostmasterIsAlive() reads a flag set
 * by a signal on Linux: cheap enough for every request.)
 */
static void
stop_if_dying(void)
{
	if (!PostmasterIsAlive())
	{
		elog(LOG, "wa_notify worker: the postmaster died; stopping before any other request starts");
		proc_exit(1);
	}
	if (ProcDiePending)
		CHECK_FOR_INTERRUPTS();
}

static void
notice_shutdown(WaPipeline *pl)
{
	if (ShutdownRequestPending && !pl->stop)
	{
		pl->stop = true;
		pl->shutdown_at = wa_now();
	}
}

/*
 * Is it still this cycle's time to claim?  WA_PIPELINE_SECS, or longer
 * while requests are in flight: the cycle cannot end before they do, and a
 * slow request (another sender's or its own) must not hold the claims of
 * messages queued meanwhile (the longest cycle stays bounded by the
 * request timeout).
 */
static bool
claim_time_left(const WaPipeline *pl)
{
	double		age = wa_now() - pl->t0;

	if (age < WA_PIPELINE_SECS)
		return true;
	return wa_graph_in_flight(client) > 0 && age < WA_PIPELINE_SECS + wa_request_timeout;
}

/*
 * A sender whose queue was empty looks again now and then while the cycle
 * is held open by requests in flight (its own or another sender's): a
 * message queued meanwhile is not kept waiting for them.
 */
static bool
queue_worth_a_look(const WaPipeline *pl, const WaLane *ln)
{
	if (!ln->exhausted)
		return true;
	return !pl->paced && wa_graph_in_flight(client) > 0 &&
		wa_now() - ln->exhausted_at >= WA_LOOK_AGAIN_SECS;
}

/* Little left to start of this sender, and still in this cycle's time: claim. */
static bool
may_claim(const WaPipeline *pl, const WaLane *ln)
{
	return ln->due && !pl->stop && !ln->stop && queue_worth_a_look(pl, ln) && pl->budget > 0 &&
		(ln->unstarted == 0 || (!pl->paced && ln->unstarted <= ln->in_flight_cap / 2)) &&
		(ln->claimed == 0 || (!pl->paced && claim_time_left(pl)));
}

static int	lane_in_flight_cap(const WaLane *ln);

/* How full the lane kept its size since it was last sized (in_flight.c); a new window starts. */
static void
observe_occupancy(WaLane *ln, double now, bool queue_left)
{
	wa_in_flight_observe_batch(&ln->memory->response_time, ln->in_flight_cap,
							   ln->answered - ln->answered_at_size, now - ln->sized_at, queue_left);
	ln->sized_at = now;
	ln->answered_at_size = ln->answered;
}

/*
 * A pipeline lasts as long as its queues do: it sizes each auto sender's
 * requests in flight again as it goes (at a claim, every WA_RESIZE_SECS),
 * from how full the size was kept since the last sizing (in_flight.c), as
 * the end of a pipeline does.  The worker's own pauses (its SQL runs
 * between the requests) leave part of a size empty; the next size makes
 * up for it, within the pool the client was given.
 */
static void
resize_lane(WaPipeline *pl, WaLane *ln)
{
	double		now = wa_now();
	int			cap;

	if (pl->paced || ln->pacing.max_in_flight > 0 || now - ln->sized_at < WA_RESIZE_SECS)
		return;
	observe_occupancy(ln, now, true);
	cap = Min(lane_in_flight_cap(ln), ln->in_flight_cap + pl->pool - pl->in_flight_cap);
	pl->in_flight_cap += cap - ln->in_flight_cap;
	ln->in_flight_cap = cap;
}

static void
claim_next_batch(WaPipeline *pl, WaLane *ln)
{
	WaChunk    *ch;

	resize_lane(pl, ln);
	ch = claim(pl->cy, ln, Min(ln->batch_n, pl->budget));

	if (ch->n == 0)
	{
		MemoryContextDelete(ch->cxt);
		ln->exhausted = true;
		ln->exhausted_at = wa_now();
	}
	else
	{
		ln->exhausted = false;
		if (ln->tail)
			ln->tail->next = ch;
		else
			ln->head = ch;
		ln->tail = ch;
		if (ln->cur == NULL)
		{
			ln->cur = ch;
			ln->pos = 0;
		}
		ln->claimed += ch->n;
		pl->claimed += ch->n;
		pl->budget -= ch->n;
		ln->unstarted += ch->n;
	}
	if (pl->paced)
		ln->exhausted = true;
}

/* The lane's next item to start, or NULL (its cursor moves past started and skipped items). */
static WaItem *
next_unstarted(WaLane *ln)
{
	while (ln->cur)
	{
		WaItem	   *it;

		if (ln->pos >= ln->cur->n)
		{
			ln->cur = ln->cur->next;
			ln->pos = 0;
			continue;
		}
		it = &ln->cur->items[ln->pos];
		if (!it->attempted && !it->finished)
			return it;
		ln->pos++;
	}
	return NULL;
}

/*
 * The sender's rate cap (one start every ln->spacing seconds on average) as
 * a token bucket: the worker's own pauses (its SQL runs between the
 * requests) would otherwise cost the sender the starts they held up.  The
 * bucket holds WA_RATE_BURST seconds of the rate (at least one start) and
 * refills so much slower that no second holds more starts than the rate
 * (capacity + refill = rate); with a capacity of one it is plain spacing.
 * false: not yet (*wait_s).
 */
static bool
rate_allows(WaLane *ln, double now, double *wait_s)
{
	WaSenderMemory *m = ln->memory;
	double		rate = 1.0 / ln->spacing;
	double		capacity = Max(1.0, floor(rate * WA_RATE_BURST));
	double		refill = rate - (capacity - 1.0);

	if (m->rate_at <= 0)
		m->rate_tokens = 1.0;
	else
		m->rate_tokens = Min(capacity, m->rate_tokens + (now - m->rate_at) * refill);
	m->rate_at = now;
	if (m->rate_tokens >= 1.0)
		return true;
	*wait_s = (1.0 - m->rate_tokens) / refill;
	return false;
}

/*
 * Start one request of the lane if its caps allow; false when it cannot
 * now (*wait_s: how long until its pacing allows, 0: not pacing).
 */
static bool
start_one(WaPipeline *pl, WaLane *ln, double now, double *wait_s)
{
	WaItem	   *it;

	*wait_s = 0;
	if (pl->stop || ln->stop || ln->unstarted <= 0 || ln->in_flight >= ln->in_flight_cap)
		return false;
	if ((it = next_unstarted(ln)) == NULL)
		return false;
	if (now < ln->next_start)
	{
		*wait_s = ln->next_start - now;
		return false;
	}
	if (ln->spacing > 0 && !rate_allows(ln, now, wait_s))
		return false;
	stop_if_dying();
	if (!wa_graph_start(client, &it->req))
		return false;
	it->attempted = true;
	ln->unstarted--;
	ln->in_flight++;
	if (ln->spacing > 0)
		ln->memory->rate_tokens -= 1.0;
	ln->memory->last_start = wa_now();
	ln->pos++;
	return true;
}

/*
 * Start what each sender's pacing and in-flight cap allow, one request per
 * sender in turn; returns the wait (ms) for the next start.
 */
static long
start_requests(WaPipeline *pl, long timeout)
{
	for (;;)
	{
		bool		started = false;
		double		wait = 0;
		double		now = wa_now();

		for (int l = 0; l < pl->cy->nlanes; l++)
		{
			double		w;

			if (start_one(pl, &pl->cy->lanes[l], now, &w))
				started = true;
			else if (w > 0 && (wait == 0 || w < wait))
				wait = w;
		}
		if (started)
			continue;
		if (wait <= 0)
			return timeout;
		if (wa_graph_in_flight(client) == 0 && wait < 0.2)
		{
			nap((long) (wait * 1000.0));
			continue;
		}
		return Max(1, Min(timeout, (long) (wait * 1000.0)));
	}
}

/* Has this sender nothing in flight and nothing more to start in this cycle? */
static bool
lane_finished(const WaPipeline *pl, const WaLane *ln)
{
	return ln->in_flight == 0 &&
		(!ln->due || pl->stop || ln->stop ||
		 (ln->unstarted == 0 && (ln->exhausted || pl->budget <= 0 || pl->paced ||
								 !claim_time_left(pl))));
}

/* Nothing in flight and nothing more to start in this cycle (or stopped). */
static bool
pipeline_finished(const WaPipeline *pl)
{
	double		now = wa_now();

	if (pl->shutdown_at > 0 && now - pl->shutdown_at > WA_SHUTDOWN_GRACE)
		return true;
	for (int l = 0; l < pl->cy->nlanes; l++)
		if (!lane_finished(pl, &pl->cy->lanes[l]))
			return false;
	return true;
}

/*
 * An answer's consequence for the rest of the batch, from the error's
 * effects: an account pause or a throttle starts nothing more of that
 * sender (its pause and rate are its own); a held template or a pair-rate
 * wait puts back that event's or that recipient's unstarted requests.
 */
static void
apply_to_batch(WaPipeline *pl, const WaItem *it)
{
	const WaErrorEffect *ef = wa_error_effect(it->err);

	if (ef->stop_batch || it->err->cooldown_secs > 0)
		it->lane->stop = true;
	if (ef->hold_template)
		skip_unstarted(pl->cy->lanes, pl->cy->nlanes, it->event, NULL);
	if (ef->on_send == WA_RETRY_PAIR)
		skip_unstarted(pl->cy->lanes, pl->cy->nlanes, NULL, it->phone);
}

/* Wait for answers (at most timeout ms) and classify them. */
static void
collect_answers(WaPipeline *pl, long timeout)
{
	int			k = 0;

	if (wa_graph_in_flight(client) > 0)
		k = wa_graph_wait(client, timeout, pl->done, pl->pool);
	else
		nap(Min(timeout, 100));
	for (int i = 0; i < k; i++)
	{
		WaItem	   *it = (WaItem *) pl->done[i];

		if (it->req.curl_code == 0)
			wa_response_time_observe(&it->lane->memory->response_time,
									 wa_now() - it->req.started_at);
		it->finished = true;
		it->lane->in_flight--;
		it->lane->answered++;
		it->err = classify(&it->req);
		pl->finished++;
		pl->unrecorded++;
		apply_to_batch(pl, it);
	}
	if (k > 0)
		set_activity("sending %d/%d", pl->finished, pl->claimed);
}

/* Record what is known so far; batches may be freed: re-find each cursor and tail. */
static void
record_progress(WaPipeline *pl)
{
	record(pl->cy->lanes, pl->cy->nlanes, false);
	pl->unrecorded = 0;
	pl->recorded_at = wa_now();
	for (int l = 0; l < pl->cy->nlanes; l++)
	{
		WaLane	   *ln = &pl->cy->lanes[l];
		bool		alive = false;

		ln->tail = ln->head;
		while (ln->tail && ln->tail->next)
			ln->tail = ln->tail->next;
		for (WaChunk *ch = ln->head; ch; ch = ch->next)
			if (ch == ln->cur)
				alive = true;
		if (ln->cur && !alive)
		{
			ln->cur = ln->head;
			ln->pos = 0;
		}
	}
}

static void
pipeline_loop(WaPipeline *pl)
{
	for (;;)
	{
		long		timeout;

		notice_shutdown(pl);
		stop_if_dying();
		for (int l = 0; l < pl->cy->nlanes; l++)
			if (may_claim(pl, &pl->cy->lanes[l]))
				claim_next_batch(pl, &pl->cy->lanes[l]);
		timeout = start_requests(pl, 100);
		if (pipeline_finished(pl))
			break;
		collect_answers(pl, timeout);
		/*
		 * Outcomes are recorded a quarter of the sizes at a time: a record
		 * is SQL that holds every request up while it runs, and one of all
		 * the senders' sizes (500 outcomes at four HIGH numbers) held them
		 * for longer than the rate cap's bucket makes up for.
		 */
		if (!pl->stop && (pl->unrecorded >= Max(pl->in_flight_cap / WA_RECORD_SHARE, 64) ||
						  (pl->unrecorded > 0 && wa_now() - pl->recorded_at >= WA_RECORD_EVERY)))
			record_progress(pl);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/* Free the senders' Authorization headers (nothing is in flight). */
static void
free_lane_auth(WaCycle *cy)
{
	for (int l = 0; l < cy->nlanes; l++)
	{
		wa_graph_auth_free(cy->lanes[l].auth);
		cy->lanes[l].auth = NULL;
	}
}

/*
 * Run the pipeline; whatever happens, no request stays in flight.  The loop
 * is a function of its own so that no local variable lives across the
 * PG_TRY's setjmp.  Returns how many messages were claimed.
 */
static int
run_pipeline(WaCycle *cy, bool paced, int budget)
{
	WaPipeline *pl = palloc0(sizeof(WaPipeline));
	int			claimed;

	pl->cy = cy;
	pl->paced = paced;
	pl->budget = budget;
	pl->t0 = pl->recorded_at = wa_now();
	for (int l = 0; l < cy->nlanes; l++)
	{
		WaLane	   *ln = &cy->lanes[l];

		if (!ln->due)
			continue;
		pl->in_flight_cap += ln->in_flight_cap;
		pl->pool += paced ? ln->in_flight_cap : Max(ln->in_flight_cap, wa_in_flight_ceiling(&ln->pacing));
		ln->sized_at = pl->t0;
	}
	pl->in_flight_cap = Max(pl->in_flight_cap, 1);
	pl->pool = Max(pl->pool, 1);
	pl->done = palloc(sizeof(WaGraphRequest *) * pl->pool);
	/* every request names its sender's URL and token: the client's are unused */
	wa_graph_client_configure(client, "", "", pl->pool,
							  Min(10000L, wa_request_timeout * 1000L),
							  wa_request_timeout * 1000L);
	PG_TRY();
	{
		pipeline_loop(pl);
	}
	PG_FINALLY();
	{
		wa_graph_abort_all(client);
		free_lane_auth(cy);
	}
	PG_END_TRY();
	record(cy->lanes, cy->nlanes, true);
	/* how much of each size was in flight (auto max_in_flight, in_flight.c) */
	for (int l = 0; l < cy->nlanes; l++)
	{
		WaLane	   *ln = &cy->lanes[l];

		if (ln->due)
			observe_occupancy(ln, wa_now(), !ln->exhausted && !pl->stop && !paced);
	}
	/* anything left (answers that never came at shutdown) stays 'sending' */
	for (int l = 0; l < cy->nlanes; l++)
		while (cy->lanes[l].head)
		{
			WaChunk    *ch = cy->lanes[l].head;

			cy->lanes[l].head = ch->next;
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

/* The connection checks, when due or when the settings changed; then re-read. */
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

/*
 * Why this sender sends nothing now (activity text into buf, *until: when
 * to look again); false when it may send.  'default' says it as 1.0 did.
 */
static bool
lane_blocked(const WaLane *ln, double now, char *buf, size_t len, double *until)
{
	bool		is_default = strcmp(ln->sender, "default") == 0;
	char		who[96];

	snprintf(who, sizeof(who), is_default ? "%s" : "sender %s ", is_default ? "" : ln->sender);
	if (!ln->ready)
	{
		snprintf(buf, len, "idle: %saccess_token or phone_number_id not configured", who);
		*until = now + WA_IDLE_RECHECK;
	}
	else if (ln->paused_reason)
	{
		snprintf(buf, len, "%spaused: %s", who, ln->paused_reason);
		*until = Min(now + WA_IDLE_RECHECK, next_check_at);
	}
	else if (ln->pause_until > now)
	{
		/* which error and for how long: wa_notify.graph_errors.cooldown_secs */
		snprintf(buf, len, "%spaused until %s: Graph error cool-down", who, time_str(ln->pause_until));
		*until = ln->pause_until;
	}
	else
		return false;
	return true;
}

/*
 * Say why nothing is sent until *until; false when some sender may send.
 * The master switch and quiet hours hold every sender; a sender's own
 * pause holds only it (the card says so when every sender is held).
 */
static bool
sending_blocked(WaCycle *cy, double now, double *until)
{
	char		first[256] = "";
	double		soonest = 0;
	bool		any_free = false;

	for (int l = 0; l < cy->nlanes; l++)
	{
		WaLane	   *ln = &cy->lanes[l];
		char		why[256];
		double		u;

		ln->due = !lane_blocked(ln, now, why, sizeof(why), &u);
		if (ln->due)
			any_free = true;
		else
		{
			if (first[0] == '\0' && (ln->ready || !cy->ready))
				strlcpy(first, why, sizeof(first));
			if (ln->ready && (soonest == 0 || u < soonest))
				soonest = u;
		}
	}
	if (!cy->ready)
	{
		set_activity("%s", cy->nlanes > 0 ? first : "idle: no sender enabled");
		*until = now + WA_IDLE_RECHECK;
		report_state(0);
	}
	else if (!cy->enabled)
	{
		set_activity("paused: master switch off (enabled = false)");
		*until = now + WA_IDLE_RECHECK;
		report_state(0);
	}
	else if (!any_free)
	{
		set_activity("%s", first);
		*until = soonest > 0 ? soonest : now + WA_IDLE_RECHECK;
		report_state(strstr(first, "cool-down") ? soonest : 0);
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
 * Per-batch cap: at most max_per_batch claims per polling interval, all
 * senders together.  The interval opens at its first claim; after a
 * restart it is seeded from the claims the database remembers.  Returns
 * the claims left (<= 0: *until says when the next interval opens).
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
 * The most requests one sender may have in flight: its max_in_flight (a
 * NULL column: the setting), lowered by its throttle factor when no rate
 * cap spaces its starts; auto (0) sizes it by Little's law from its own
 * response times (in_flight.c).  The one place this cap is computed.
 */
static int
lane_in_flight_cap(const WaLane *ln)
{
	return wa_sender_in_flight(&ln->pacing, &ln->memory->response_time, ln->rate_factor);
}

/*
 * Pacing of one sender: its rate cap spaces its starts (lowered by its
 * throttle factor), random delays send one message at a time.  False when
 * its next paced message is not due yet (*until).
 */
static bool
plan_lane(const WaCycle *cy, WaLane *ln, double now, int budget, double *until)
{
	bool		paced = cy->max_delay > 0;
	double		start_at;
	double		rate;
	int			n;

	ln->in_flight_cap = lane_in_flight_cap(ln);
	rate = wa_sender_rate_cap(&ln->pacing);
	ln->spacing = rate > 0 ? 1.0 / (rate * ln->rate_factor) : 0;
	if (paced)
	{
		start_at = ln->memory->last_start + Max(ln->memory->next_gap, ln->spacing);
		if (now < start_at - WA_CLAIM_AHEAD)
		{
			*until = start_at - WA_CLAIM_AHEAD;
			return false;
		}
		n = 1;
		ln->in_flight_cap = 1;
	}
	else
	{
		start_at = now;			/* the rate cap's bucket spaces the starts */
		n = Min(budget, Max(ln->in_flight_cap * 2, 64));
		if (ln->spacing > 0)
			n = Min(n, (int) ceil(1.0 / ln->spacing) + 1);
		n = Min(n, WA_MAX_BATCH);
	}
	ln->next_start = start_at;
	ln->batch_n = Min(n, budget);
	return true;
}

/* Each free sender's plan; false when none is due yet (*until: the first that is). */
static bool
plan_sending(WaCycle *cy, double now, int budget, double *until)
{
	double		soonest = 0;
	bool		any = false;

	for (int l = 0; l < cy->nlanes; l++)
	{
		WaLane	   *ln = &cy->lanes[l];
		double		u = 0;

		if (!ln->due)
			continue;
		ln->due = plan_lane(cy, ln, now, budget, &u);
		if (ln->due)
			any = true;
		else if (soonest == 0 || u < soonest)
			soonest = u;
	}
	if (!any)
	{
		set_activity("waiting %.1f s", soonest + WA_CLAIM_AHEAD - now);
		report_state(soonest + WA_CLAIM_AHEAD);
		*until = soonest;
	}
	return any;
}

/*
 * After a batch: each sender's next random delay (paced), or when to look
 * again (nothing was claimed).  A paced delay is uniform in [min, max],
 * kept a little inside the bounds so that scheduling jitter on either
 * request cannot push the gap the API sees outside them.
 */
static double
after_batch(const WaCycle *cy, bool paced, int claimed, double now)
{
	if (claimed == 0)
	{
		double		at = cy->next_due > 0 ? cy->next_due : 0;

		set_activity("idle");
		report_state(at);
		return at > 0 ? at : now + WA_IDLE_RECHECK;
	}
	for (int l = 0; l < cy->nlanes; l++)
	{
		WaLane	   *ln = &cy->lanes[l];

		if (!ln->due || ln->claimed == 0)
			continue;
		if (paced)
		{
			double		margin = Min(0.05, (cy->max_delay - cy->min_delay) * 0.1);

			ln->memory->next_gap = cy->min_delay + margin +
				(cy->max_delay - cy->min_delay - 2 * margin) * rand_unit();
		}
		else
			ln->memory->next_gap = 0;
	}
	return 0;
}

/* ------------------------------------------------------ history upkeep */

/*
 * Retention, anonymization and the archive's partitions (maintain(),
 * 80_retention.sql) when due: at start, then when the SQL side says (every
 * hour, or at once while there is more to do).  Returns the wait `until`
 * shortened to the next run, so an idle worker wakes for it and no sooner.
 */
static double
maintain_if_due(double until)
{
	static double next_maintain_at = 0;

	if (wa_now() >= next_maintain_at)
	{
		begin_tx();
		exec_sql("SELECT wa_notify._maintain_by_worker()", SPI_OK_SELECT);
		next_maintain_at = wa_now() + col_f(0, 1);
		end_tx();
	}
	if (until > next_maintain_at)
		until = next_maintain_at;
	return until;
}

/*
 * review_resend: queue again the 'review' messages whose status never came
 * although webhooks flow (wa_notify._review_requeue(), 60_review.sql), at
 * most once every WA_REVIEW_RECHECK s.  Returns when to look again (0: no
 * message in review): the next one's due time, or, while some stay in
 * review, the next wake-up (a callback that proves the flow later is seen
 * then, WA_IDLE_RECHECK at the latest).  An idle worker with nothing in
 * review runs it once per wake-up and is never woken by it.
 */
static double review_checked_at = 0;	/* 0: check at the next cycle */
static double review_next_due = 0;
static bool review_pending = false;		/* messages stayed in review */

static double
requeue_unanswered_reviews(void)
{
	double		now = wa_now();
	int			requeued;

	if (now - review_checked_at < WA_REVIEW_RECHECK &&
		(review_next_due <= 0 || now < review_next_due))
		return review_pending ? review_checked_at + WA_REVIEW_RECHECK : review_next_due;
	review_checked_at = now;
	begin_tx();
	exec_sql("SELECT requeued, extract(epoch FROM next_due), remaining FROM wa_notify._review_requeue()",
			 SPI_OK_SELECT);
	requeued = atoi(col(0, 1));
	review_next_due = col_f(0, 2);
	review_pending = atoi(col(0, 3)) > 0;
	end_tx();
	if (requeued > 0)
		elog(LOG, "wa_notify worker: %d message(s) in review queued again: no status within review_window while webhooks arrived",
			 requeued);
	return review_next_due;
}

/* One dispatch decision; returns the time to wait until (0: go on now). */
static double
dispatch_once(void)
{
	WaCycle		cy;
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
	if (!plan_sending(&cy, now, budget, &until))
		return until;

	if (window_count == 0)
		window_start = now;
	claimed = run_pipeline(&cy, cy.max_delay > 0, budget);
	window_count += claimed;
	return after_batch(&cy, cy.max_delay > 0, claimed, now);
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
	/*
	 * The worker's queries are small and run many times; a plan whose cost
	 * estimate passes jit_above_cost (the senders' functions nest, and their
	 * estimates multiply) was compiled again at every cycle, a tenth of the
	 * worker's time at full speed.
	 */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	raise_open_files_limit();
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
		double		review_due;

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
			review_checked_at = 0;
			reported_activity[0] = '\0';
			next_check_at = 0;
		}

		review_due = requeue_unanswered_reviews();
		until = maintain_if_due(dispatch_once());
		if (until > 0 && review_due > 0)
			until = Min(until, review_due);
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
