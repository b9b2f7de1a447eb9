/*-------------------------------------------------------------------------
 * webhook.c
 *	  Meta's webhooks (doc/design.md, "Webhooks"):
 *	  wa_notify.webhook_verify(), the GET handshake, and wa_notify.webhook_receive(), which checks the
 *	  X-Hub-Signature-256 HMAC over the raw body and applies every change of
 *	  the payload in the caller's transaction:
 *	    - statuses sent/delivered/read/failed, monotonic (a status never
 *	      moves a message backwards, a repeat changes nothing, each
 *	      timestamp column is filled once), matched by wamid, else by
 *	      biz_opaque_callback_data ("<id>.<mac>", secrets.c) when its MAC
 *	      checks, the message was claimed and the recipient is its phone;
 *	      the status order is status_order[] below, and only there;
 *	    - what a failure does (error columns, hint, blacklist, template
 *	      hold, account pause, cool-down) is not decided here: this file
 *	      makes the message 'failed' and calls wa_notify._apply_error(),
 *	      the function the dispatcher's _record() calls for a send, which
 *	      reads the effects from the Graph error table (graph_errors.c);
 *	    - inbound opt-out keywords -> blacklist (source opt_out), by phone
 *	      and/or business-scoped user ID (BSUID); user_changed_user_id
 *	      system messages move a BSUID block;
 *	    - statuses' BSUID and pricing -> the message (in the status's own
 *	      UPDATE on the one-statement path, else apply_status_cloud);
 *	    - template status updates -> wa_notify.event and wa_notify.template;
 *	      template_category_update and message_template_quality_update ->
 *	      wa_notify.template (a move to MARKETING may hold an event);
 *	    - phone number quality updates -> wa_notify.state;
 *	    - several senders (issue 12): each status and message is routed by
 *	      its change's metadata.phone_number_id to its sender, whose app
 *	      secret (or the global one) must be the one that signed the body
 *	      (see "senders" below); a number no sender has is ignored and
 *	      counted.
 *
 *	  Settings come from the transaction's typed snapshot (settings.c);
 *	  the payload is parsed by the pure parser in webhook_parse.c (also
 *	  built into the libFuzzer target); this file is the SPI apply step.
 *	  A status costs one UPDATE by wamid in the common case (see
 *	  apply_status()); apply_status_locked() is the general path.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "graph_errors.h"
#include "settings.h"
#include "wa_notify.h"
#include "webhook_parse.h"

/* "last callback" is rewritten at most this often (seconds), see below */
#define WH_LAST_CALLBACK_GRANULARITY "1 second"

typedef struct WhSettings
{
	char	   *phone_number_id;	/* the default sender's number, NULL: unset */
	char	   *default_language;
	char	   *default_country_code;
	char	   *opt_out_keywords;	/* a text[] literal */
	int64		max_body;
} WhSettings;

typedef struct WhCounts
{
	int			applied;		/* statuses that changed a message */
	int			unchanged;		/* matched, nothing to change (repeats) */
	int			unknown;		/* no message matched */
	int			ignored;		/* status values / fields we do not act on */
	int			opt_outs;		/* senders blacklisted by keyword */
	int			templates;		/* events whose template status changed */
	int			quality;		/* state rows changed by quality updates */
	int			unknown_numbers;	/* statuses/messages for a number that is
									 * no sender's */
	int			refused;		/* for a sender whose app secret did not sign */
} WhCounts;

/*
 * Who each status and inbound message of a payload is for (route_changes()):
 * its sender, or NULL when it is not applied (a number that is no sender's,
 * or a sender whose app secret is not the one that signed the body).
 */
typedef struct WhRouting
{
	const char **status_sender;
	const char **inbound_sender;
} WhRouting;

/* plans kept for the life of the backend */
static SPIPlanPtr plan_by_wamid;
static SPIPlanPtr plan_by_id;
static SPIPlanPtr plan_update;
static SPIPlanPtr plan_apply_error;
static SPIPlanPtr plan_keywords;
static SPIPlanPtr plan_optout;
static SPIPlanPtr plan_template;
static SPIPlanPtr plan_quality;
static SPIPlanPtr plan_state;
static SPIPlanPtr plan_user_id_changed;
static SPIPlanPtr plan_status_cloud;
static SPIPlanPtr plan_template_cloud;
static SPIPlanPtr plan_category;
static SPIPlanPtr plan_template_quality;

static SPIPlanPtr
prep(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
		*slot = wa_prepare_kept(sql, nargs, types, 0);
	return *slot;
}

/* the same, for a plan whose parameters never change its shape: generic at once */
static SPIPlanPtr
prep_generic(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
		*slot = wa_prepare_kept(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);
	return *slot;
}

static void
exec(SPIPlanPtr plan, Datum *values, const char *nulls, bool ro, int expect)
{
	int			rc = SPI_execute_plan(plan, values, nulls, ro, 0);

	if (rc != expect)
		elog(ERROR, "webhook: SPI_execute_plan returned %s",
			 SPI_result_code_string(rc));
}

/* A payload string (UTF-8) as a text Datum in the database encoding. */
static Datum
txt(const char *s)
{
	return CStringGetTextDatum(pg_any_to_server(s, strlen(s), PG_UTF8));
}

static char *
col_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * The settings a webhook call needs, copied from the transaction's snapshot
 * (settings.c): applying the payload may write wa_notify.event, which drops
 * the snapshot.
 */
static void
load_settings(WhSettings *s)
{
	const WaSettings *set = wa_settings();

	s->phone_number_id = set->phone_number_id && set->phone_number_id[0] ?
		pstrdup(set->phone_number_id) : NULL;
	s->default_language = set->default_language ? pstrdup(set->default_language) : NULL;
	s->default_country_code = set->default_country_code ? pstrdup(set->default_country_code) : NULL;
	s->opt_out_keywords = pstrdup(set->opt_out_keywords);
	s->max_body = set->webhook_max_body;
}

/* ------------------------------------------------------------ statuses */

/*
 * The order of message statuses, defined here only: the locked path
 * compares ranks, the one-statement path's SQL lists (status_list()) are
 * built from the same table.  0: not sent yet; 1-3 sent, delivered, read;
 * -1 failed (a delivered or read still wins: it proves arrival); -2 never
 * sent (skipped, expired): a status for such a message is noise.
 */
#define RANK_UNSENT		0
#define RANK_FAILED		(-1)
#define RANK_NEVER		(-2)

static const struct
{
	const char *status;
	int			rank;
}			status_order[] = {
	{"queued", RANK_UNSENT}, {"sending", RANK_UNSENT}, {"review", RANK_UNSENT},
	{"sent", 1}, {"delivered", 2}, {"read", 3},
	{"failed", RANK_FAILED}, {"skipped", RANK_NEVER}, {"expired", RANK_NEVER},
};

/* the status a webhook status kind sets (sent, delivered, read, failed) */
static const char *const kind_status[] = {
	[WH_ST_SENT] = "sent", [WH_ST_DELIVERED] = "delivered", [WH_ST_READ] = "read",
	[WH_ST_FAILED] = "failed",
};

static int
status_rank(const char *st)
{
	for (size_t i = 0; i < lengthof(status_order); i++)
		if (strcmp(st, status_order[i].status) == 0)
			return status_order[i].rank;
	return RANK_NEVER;
}

/*
 * May a status of this kind move a message at rank cur?  Forward only;
 * delivered and read also move a failed one; failed applies to a message
 * not delivered yet.
 */
static bool
kind_moves(WhStatusKind kind, int cur)
{
	if (kind == WH_ST_FAILED)
		return cur >= RANK_UNSENT && cur <= 1;
	return (cur >= RANK_UNSENT && status_rank(kind_status[kind]) > cur) ||
		(cur == RANK_FAILED && status_rank(kind_status[kind]) >= 2);
}

/* "'queued', 'sending', ...": the statuses kind_moves() accepts (or the never-sent ones) */
static char *
status_list(WhStatusKind kind, bool never_sent)
{
	StringInfoData b;

	initStringInfo(&b);
	for (size_t i = 0; i < lengthof(status_order); i++)
	{
		int			r = status_order[i].rank;

		if (never_sent ? r != RANK_NEVER : !kind_moves(kind, r))
			continue;
		appendStringInfo(&b, "%s'%s'", b.len ? ", " : "", status_order[i].status);
	}
	return b.data;
}

#define MSG_COLS "id, status, sent_at, delivered_at, read_at, failed_at, wamid, wa_id, phone, event"
enum
{
	C_ID = 1, C_STATUS, C_SENT, C_DELIVERED, C_READ, C_FAILED, C_WAMID, C_WAID,
	C_PHONE, C_EVENT, NCOLS = C_EVENT
};

/* statuses of a message that was claimed for sending (biz_opaque match) */
#define CLAIMED_STATUSES "'sending', 'sent', 'delivered', 'read', 'failed', 'review'"

/*
 * Is a status's recipient_id (a WhatsApp id: E.164 digits, which for a
 * Brazilian mobile may lack the ninth digit) the message's phone?
 */
static bool
same_recipient(const char *recipient_id, const char *phone)
{
	char		rk[WA_PHONE_MAXLEN];
	char		pk[WA_PHONE_MAXLEN];
	size_t		rlen = recipient_id ? strlen(recipient_id) : 0;

	if (rlen == 0 || rlen >= WA_PHONE_MAXLEN || strspn(recipient_id, "0123456789") != rlen ||
		phone == NULL || strlen(phone) >= WA_PHONE_MAXLEN)
		return false;
	wa_phone_key(recipient_id, rk, sizeof(rk));
	wa_phone_key(phone, pk, sizeof(pk));
	return strcmp(rk, pk) == 0;
}

/*
 * Find and lock the message a status is about; false when none matches.
 * By wamid; else by biz_opaque_callback_data, which matches only when its
 * MAC checks (secrets.c: the request came from this install), the message
 * was claimed for sending, has no other wamid, and the status's recipient
 * is the message's phone: a status from another sender on the number (a
 * CRM, a reinstalled database whose ids start again at 1) never matches.
 * Either way the message must be the sender's whose number the status came
 * in (value.metadata.phone_number_id): a status for sender A's message in
 * sender B's metadata matches nothing (counted unknown).
 */
static bool
find_message(const WhStatus *st, const char *sender)
{
	Oid			t_text[2] = {TEXTOID, TEXTOID};
	Oid			t_int8[2] = {INT8OID, TEXTOID};
	Datum		v[2];
	int64		id;
	bool		isnull;

	v[0] = txt(st->wamid);
	v[1] = CStringGetTextDatum(sender);
	exec(prep(&plan_by_wamid,
			  "SELECT " MSG_COLS " FROM wa_notify.message WHERE wamid = $1 AND sender = $2 FOR UPDATE",
			  2, t_text),
		 v, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
		return true;

	if (!wa_callback_data_check(st->biz_opaque, &id) ||
		st->recipient_id == NULL || st->recipient_id[0] == '\0')
		return false;
	v[0] = Int64GetDatum(id);
	exec(prep(&plan_by_id,
			  "SELECT " MSG_COLS " FROM wa_notify.message WHERE id = $1 AND sender = $2"
			  " AND status IN (" CLAIMED_STATUSES ") FOR UPDATE",
			  2, t_int8),
		 v, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	if (!same_recipient(st->recipient_id, col_text(0, C_PHONE)))
		return false;
	/* a message that already has another wamid is another send */
	SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, C_WAMID, &isnull);
	if (isnull)
		return true;
	return strcmp(col_text(0, C_WAMID), st->wamid) == 0;
}

/* A phone or WhatsApp id as E.164 digits, or NULL when it is not one. */
static char *
to_e164(const char *phone_or_waid, const char *cc)
{
	char		in[64];
	char		out[WA_PHONE_MAXLEN];
	const char *error;

	if (phone_or_waid == NULL || strlen(phone_or_waid) > 40)
		return NULL;
	snprintf(in, sizeof(in), "+%s", phone_or_waid);
	if (!wa_phone_normalize(in, cc, out, sizeof(out), &error))
		return NULL;
	return pstrdup(out);
}

/*
 * A failed status's error text, "(#code) message: details", in the
 * database encoding; what the error does (its class, the hint, blacklist,
 * hold, pause, cool-down) is wa_notify._apply_error()'s, as for a send.
 */
static char *
failure_reason(const WhStatus *st)
{
	StringInfoData r;

	initStringInfo(&r);
	if (st->error_code >= 0)
		appendStringInfo(&r, "(#%d) ", st->error_code);
	appendStringInfoString(&r, st->error_message ? st->error_message :
						   st->error_title ? st->error_title :
						   wa_graph_failure_lookup(st->error_code, 400)->title);
	if (st->error_details && st->error_details[0])
		appendStringInfo(&r, ": %s", st->error_details);
	return pg_any_to_server(r.data, r.len, PG_UTF8);
}

/* The message just became 'failed': apply what its error does. */
static void
apply_error(int64 message_id, const WhStatus *st)
{
	Oid			types[4] = {INT8OID, INT4OID, TEXTOID, TEXTOID};
	Datum		v[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	v[0] = Int64GetDatum(message_id);
	v[1] = Int32GetDatum(st->error_code);
	nulls[1] = st->error_code < 0 ? 'n' : ' ';
	v[2] = CStringGetTextDatum(failure_reason(st));
	/* the blacklist applies to the recipient the status names */
	v[3] = st->recipient_id ? CStringGetTextDatum(st->recipient_id) : (Datum) 0;
	nulls[3] = st->recipient_id ? ' ' : 'n';
	exec(prep(&plan_apply_error,
			  "SELECT wa_notify._apply_error($1, $2, NULL, 'webhook', $3, recipient => $4)", 4, types),
		 v, nulls, false, SPI_OK_SELECT);
}

/*
 * The general path: find and lock the message (by wamid, else by
 * biz_opaque_callback_data), work the change out here, update it by id.
 * apply_status() tries the one-statement path first and comes here for
 * whatever that did not settle.  false when no message matched.
 */
static bool
apply_status_locked(const WhStatus *st, const char *sender, WhCounts *cnt)
{
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		v[NCOLS];
	bool		isnull[NCOLS];
	char		nulls[NCOLS];
	int			cur;
	bool		changed = false;
	TimestampTz ts;

	if (!find_message(st, sender))
	{
		cnt->unknown++;
		return false;
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	for (int i = 0; i < NCOLS; i++)
	{
		v[i] = SPI_getbinval(tup, desc, i + 1, &isnull[i]);
		/* copy out: the tuple table goes with the next SPI call */
		if (!isnull[i])
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			v[i] = datumCopy(v[i], att->attbyval, att->attlen);
		}
	}
	cur = status_rank(TextDatumGetCString(v[C_STATUS - 1]));
	ts = st->timestamp > 0 ? time_t_to_timestamptz((pg_time_t) st->timestamp)
		: GetCurrentTimestamp();

#define SET_IF_NULL(col, datum) \
	do { if (isnull[(col) - 1]) { v[(col) - 1] = (datum); isnull[(col) - 1] = false; changed = true; } } while (0)

	if (cur == RANK_NEVER)
	{
		/* skipped or expired: never sent, a status for it is noise */
		cnt->ignored++;
		return true;
	}
	if (kind_moves(st->kind, cur))
	{
		v[C_STATUS - 1] = CStringGetTextDatum(kind_status[st->kind]);
		changed = true;
	}
	if (st->kind == WH_ST_FAILED)
	{
		if (kind_moves(st->kind, cur))
		{
			v[C_FAILED - 1] = TimestampTzGetDatum(ts);
			isnull[C_FAILED - 1] = false;
		}
	}
	else
		SET_IF_NULL(st->kind == WH_ST_SENT ? C_SENT :
					st->kind == WH_ST_DELIVERED ? C_DELIVERED : C_READ,
					TimestampTzGetDatum(ts));
	/* found by biz_opaque_callback_data: learn the wamid; and the wa_id */
	SET_IF_NULL(C_WAMID, txt(st->wamid));
	if (st->recipient_id && st->recipient_id[0])
		SET_IF_NULL(C_WAID, txt(st->recipient_id));
	if (!changed)
	{
		cnt->unchanged++;
		return true;
	}

	{
		Oid			types[C_WAID] = {INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};

		for (int i = 0; i < NCOLS; i++)
			nulls[i] = isnull[i] ? 'n' : ' ';
		exec(prep(&plan_update,
				  "UPDATE wa_notify.message SET status = $2, sent_at = $3, delivered_at = $4,"
				  " read_at = $5, failed_at = $6, wamid = $7, wa_id = $8, updated_at = now()"
				  " WHERE id = $1",
				  C_WAID, types),
			 v, nulls, false, SPI_OK_UPDATE);
	}
	cnt->applied++;

	if (st->kind == WH_ST_FAILED && kind_moves(st->kind, cur))
		apply_error(DatumGetInt64(v[C_ID - 1]), st);
	return true;
}

/* ------------------------------------------------- statuses: fast path */

static Datum txt_or_null(const char *s, char *null);
static void apply_status_cloud(const WhStatus *st);

/*
 * The common case, one statement per status: an UPDATE by wamid that moves
 * the message forward only (the statuses it moves from are in the
 * statement, from status_order), and whose WHERE clause lets a no-op
 * repeat change nothing (no new row version, no transaction id, no WAL).
 * When it changes nothing, a plain SELECT tells an unchanged (or ignored)
 * message from anything else; "anything else" (no message by that wamid,
 * the biz_opaque_callback_data match, a row changed concurrently between the
 * two statements) takes the locking path, apply_status_locked(), whose
 * outcome the fast path never differs from.
 */

/* the timestamp column each kind fills */
static const char *const kind_column[] = {
	[WH_ST_SENT] = "sent_at", [WH_ST_DELIVERED] = "delivered_at", [WH_ST_READ] = "read_at",
	[WH_ST_FAILED] = "failed_at",
};

/*
 * For sent, delivered and read the statement also records the status's
 * pricing and BSUID (what _status_cloud() does for the other paths), so a
 * first delivery costs one row version and a repeat none.  Two variants per
 * kind: with the BSUID in its SET list, or without it, so that a status
 * without a BSUID never names recipient_user_id (the trigger
 * link_blocked_user_id fires on UPDATE OF that column).
 */
#define FAST_NARGS 8
static char *fast_sql[WH_ST_FAILED + 1][2];
static char *check_sql[WH_ST_FAILED + 1];
static SPIPlanPtr plan_fast[WH_ST_FAILED + 1][2];
static SPIPlanPtr plan_check[WH_ST_FAILED + 1];

/*
 * sent, delivered, read: $1 wamid, $2 timestamp, $3 wa_id (or NULL),
 * $4 the sender whose number the status came in, $5 billable, $6 pricing
 * type, $7 pricing category, $8 BSUID (each NULL when absent; $8 used by
 * the with_user_id variant only);
 * failed: the transition only ($1-$4), RETURNING the id for _apply_error().
 * The check: $1 wamid, $2 wa_id, $3 sender: is it ignored, would the status
 * change it.
 */
static void
build_status_sql(WhStatusKind kind)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	char	   *from = status_list(kind, false);
	char	   *never = status_list(kind, true);
	const char *col = kind_column[kind];

	if (kind == WH_ST_FAILED)
	{
		fast_sql[kind][0] = fast_sql[kind][1] = psprintf(
			"UPDATE wa_notify.message SET status = 'failed', failed_at = $2, wa_id = coalesce(wa_id, $3),"
			" updated_at = now() WHERE wamid = $1 AND sender = $4 AND status IN (%s) RETURNING id", from);
		check_sql[kind] = psprintf(
			"SELECT status IN (%s), status IN (%s) OR (wa_id IS NULL AND $2 IS NOT NULL)"
			" FROM wa_notify.message WHERE wamid = $1 AND sender = $3", never, from);
	}
	else
	{
		for (int with_user_id = 0; with_user_id <= 1; with_user_id++)
			fast_sql[kind][with_user_id] = psprintf(
				"UPDATE wa_notify.message SET status = CASE WHEN status IN (%s) THEN '%s' ELSE status END,"
				" %s = coalesce(%s, $2), wa_id = coalesce(wa_id, $3),"
				" billable = coalesce($5, billable), pricing_type = coalesce($6, pricing_type),"
				" pricing_category = coalesce($7, pricing_category)%s, updated_at = now()"
				" WHERE wamid = $1 AND sender = $4 AND (status IN (%s) OR (status NOT IN (%s)"
				" AND (%s IS NULL OR (wa_id IS NULL AND $3 IS NOT NULL)"
				"      OR billable IS DISTINCT FROM coalesce($5, billable)"
				"      OR pricing_type IS DISTINCT FROM coalesce($6, pricing_type)"
				"      OR pricing_category IS DISTINCT FROM coalesce($7, pricing_category)%s)))",
				from, kind_status[kind], col, col,
				with_user_id ? ", recipient_user_id = coalesce($8, recipient_user_id)" : "",
				from, never, col,
				with_user_id ? " OR recipient_user_id IS DISTINCT FROM coalesce($8, recipient_user_id)" : "");
		check_sql[kind] = psprintf(
			"SELECT status IN (%s), status IN (%s) OR %s IS NULL"
			" OR (wa_id IS NULL AND $2 IS NOT NULL)"
			" FROM wa_notify.message WHERE wamid = $1 AND sender = $3", never, from, col);
	}
	MemoryContextSwitchTo(old);
}

static void
apply_status(const WhStatus *st, const char *sender, WhCounts *cnt)
{
	static const Oid fast_types[FAST_NARGS] = {TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID,
	BOOLOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[FAST_NARGS];
	char		nulls[FAST_NARGS] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		failed = st->kind == WH_ST_FAILED;
	int			with_user_id = !failed && st->recipient_user_id != NULL;

	if (st->kind == WH_ST_OTHER)
	{
		cnt->ignored++;
		return;
	}
	if (fast_sql[st->kind][0] == NULL)
		build_status_sql(st->kind);

	v[0] = txt(st->wamid);
	v[1] = TimestampTzGetDatum(st->timestamp > 0 ?
							   time_t_to_timestamptz((pg_time_t) st->timestamp) :
							   GetCurrentTimestamp());
	if (st->recipient_id && st->recipient_id[0])
		v[2] = txt(st->recipient_id);
	else
		nulls[2] = 'n';
	v[3] = CStringGetTextDatum(sender);
	v[4] = BoolGetDatum(st->billable == 1);
	nulls[4] = st->billable < 0 ? 'n' : ' ';
	v[5] = txt_or_null(st->pricing_type, &nulls[5]);
	v[6] = txt_or_null(st->pricing_category, &nulls[6]);
	v[7] = txt_or_null(st->recipient_user_id, &nulls[7]);
	exec(prep_generic(&plan_fast[st->kind][with_user_id], fast_sql[st->kind][with_user_id],
					  failed ? 4 : FAST_NARGS, (Oid *) fast_types),
		 v, nulls, false, failed ? SPI_OK_UPDATE_RETURNING : SPI_OK_UPDATE);
	if (SPI_processed > 0)
	{
		cnt->applied++;
		if (failed)
		{
			bool		isnull;

			apply_error(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &isnull)), st);
			apply_status_cloud(st);
		}
		return;
	}

	/* nothing changed: a repeat (or an ignored message) when the row says so */
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		cv[3] = {v[0], v[2], v[3]};
		char		cnulls[3] = {' ', nulls[2], ' '};

		exec(prep_generic(&plan_check[st->kind], check_sql[st->kind], 3, types),
			 cv, cnulls, true, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			bool		isnull;
			bool		ignored = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1, &isnull));
			bool		would_change = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
																  SPI_tuptable->tupdesc, 2, &isnull));

			if (ignored)
			{
				cnt->ignored++;
				return;
			}
			if (!would_change)
			{
				/* a failed status's BSUID is not in its statement */
				if (failed)
					apply_status_cloud(st);
				cnt->unchanged++;
				return;
			}
		}
	}
	if (apply_status_locked(st, sender, cnt))
		apply_status_cloud(st);
}

/* ------------------------------------------------------------- inbound */

/*
 * Blacklist the sender of an opt-out keyword (source opt_out): by phone
 * when Meta gave one, by business-scoped user ID (BSUID) when it gave one
 * (a user who adopted a username may come with a BSUID only).  Both in
 * wa_notify._opt_out() (40_cloud_api.sql).  false when nothing changed.
 */
static bool
opt_out(const WhInbound *in, const char *sender, const char *keyword, const WhSettings *set)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	char	   *e164 = in->from ? to_e164(in->from, set->default_country_code) : NULL;
	bool		isnull;

	if (e164 == NULL && in->from_user_id == NULL)
	{
		ereport(WARNING,
				(errmsg("webhook: opt-out from \"%s\" ignored: not a phone number and no user ID",
						in->from)));
		return false;
	}
	v[0] = e164 ? CStringGetTextDatum(psprintf("+%s", e164)) : (Datum) 0;
	nulls[0] = e164 ? ' ' : 'n';
	v[1] = in->from_user_id ? txt(in->from_user_id) : (Datum) 0;
	nulls[1] = in->from_user_id ? ' ' : 'n';
	v[2] = CStringGetTextDatum(psprintf("opt-out keyword \"%s\"", keyword));
	v[3] = CStringGetTextDatum(sender);	/* blocked.sender: where it came to */
	exec(prep(&plan_optout, "SELECT wa_notify._opt_out($1, $2, $3, $4)", 4, types),
		 v, nulls, false, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * System messages (Meta's "System messages webhook reference"):
 * user_changed_user_id moves a block from the previous BSUID to the new one.
 */
static void
apply_system_messages(const WhPayload *p, const WhRouting *route)
{
	for (size_t i = 0; i < p->ninbound; i++)
	{
		const WhInbound *in = &p->inbound[i];
		const char *user_id = in->system_user_id ? in->system_user_id : in->from_user_id;
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		v[2];

		if (route->inbound_sender[i] == NULL ||
			in->system_type == NULL || strcmp(in->system_type, "user_changed_user_id") != 0 ||
			in->system_previous_user_id == NULL || user_id == NULL)
			continue;
		v[0] = txt(in->system_previous_user_id);
		v[1] = txt(user_id);
		exec(prep(&plan_user_id_changed, "SELECT wa_notify._user_id_changed($1, $2)", 2, types),
			 v, NULL, false, SPI_OK_SELECT);
	}
}

static void
apply_inbound(const WhPayload *p, const WhRouting *route, const WhSettings *set, WhCounts *cnt)
{
	char	  **keys = NULL;
	char	  **norm = NULL;
	int			nkeys = 0;
	bool		any = false;

	for (size_t i = 0; i < p->ninbound; i++)
		if (p->inbound[i].text && route->inbound_sender[i])
			any = true;
	if (!any)
		return;

	{
		Oid			types[1] = {TEXTOID};
		Datum		vals[1] = {CStringGetTextDatum(set->opt_out_keywords)};

		exec(prep(&plan_keywords,
				  "SELECT k FROM unnest($1::text[]) AS k WHERE k <> ''", 1, types),
			 vals, NULL, true, SPI_OK_SELECT);
	}
	nkeys = (int) SPI_processed;
	keys = palloc0(sizeof(char *) * (nkeys + 1));
	norm = palloc0(sizeof(char *) * (nkeys + 1));
	for (int k = 0; k < nkeys; k++)
	{
		char	   *utf8;

		keys[k] = col_text(k, 1);
		utf8 = (char *) pg_server_to_any(keys[k], strlen(keys[k]), PG_UTF8);
		norm[k] = palloc(strlen(utf8) * 2 + 1);
		wh_keyword_normalize(utf8, norm[k], strlen(utf8) * 2 + 1);
	}

	for (size_t i = 0; i < p->ninbound; i++)
	{
		const WhInbound *in = &p->inbound[i];
		char		buf[256];

		if (in->text == NULL || strlen(in->text) > 200 || route->inbound_sender[i] == NULL)
			continue;
		wh_keyword_normalize(in->text, buf, sizeof(buf));
		for (int k = 0; k < nkeys; k++)
		{
			if (norm[k][0] != '\0' && strcmp(buf, norm[k]) == 0)
			{
				if (opt_out(in, route->inbound_sender[i], keys[k], set))
					cnt->opt_outs++;
				break;
			}
		}
	}
}

/* ----------------------------------------------------------- templates */

/* Meta's template event -> wa_notify.event.template_status, or NULL. */
static const char *
template_status_of(const char *ev)
{
	static const char *const map[][2] = {
		{"APPROVED", "APPROVED"}, {"REINSTATED", "APPROVED"},
		{"PENDING", "PENDING"}, {"REJECTED", "REJECTED"}, {"PAUSED", "PAUSED"},
		{"DISABLED", "DISABLED"}, {"PENDING_DELETION", "DISABLED"}, {"DELETED", "DISABLED"},
	};

	for (size_t i = 0; i < lengthof(map); i++)
		if (strcmp(ev, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

static void
apply_template(const WhTemplate *t, const WhSettings *set, WhCounts *cnt)
{
	const char *status = template_status_of(t->event);
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	StringInfoData reason;

	if (status == NULL)
	{
		cnt->ignored++;
		return;
	}
	initStringInfo(&reason);
	if (t->reason && t->reason[0] && strcmp(t->reason, "NONE") != 0)
		appendStringInfoString(&reason, t->reason);
	if (strcmp(t->event, status) != 0)
		appendStringInfo(&reason, "%s%s", reason.len ? "; " : "", t->event);

	v[0] = txt(t->name);
	v[1] = txt(t->language);
	v[2] = CStringGetTextDatum(status);
	v[3] = txt(reason.data);
	nulls[3] = reason.len ? ' ' : 'n';
	v[4] = CStringGetTextDatum(set->default_language);	/* never NULL: it has a default */
	exec(prep(&plan_template,
			  "UPDATE wa_notify.event SET template_status = $3, template_status_at = now(),"
			  " template_status_reason = $4,"
			  " held_reason = CASE WHEN $3 = 'APPROVED' THEN NULL ELSE held_reason END,"
			  " held_code = CASE WHEN $3 = 'APPROVED' THEN NULL ELSE held_code END,"
			  " held_at = CASE WHEN $3 = 'APPROVED' THEN NULL ELSE held_at END"
			  " WHERE template_name = $1 AND coalesce(template_language, $5) = $2"
			  " AND (template_status IS DISTINCT FROM $3"
			  "      OR template_status_reason IS DISTINCT FROM $4"
			  "      OR ($3 = 'APPROVED' AND held_reason IS NOT NULL))", 5, types),
		 v, nulls, false, SPI_OK_UPDATE);
	cnt->templates += (int) SPI_processed;
	if (SPI_processed > 0 && strcmp(status, "APPROVED") == 0)
		wa_wake_worker_at_commit();	/* held messages may go now */
}

/* A nullable payload string as a text Datum (nulls[i] set accordingly). */
static Datum
txt_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? txt(s) : (Datum) 0;
}

/*
 * What 1.0 dropped of a message_template_status_update: reason, category,
 * disable date, lock info, into wa_notify.template (_template_status_update).
 */
static void
apply_template_cloud(const WhTemplate *t)
{
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID};
	Datum		v[9];
	char		nulls[9];

	v[0] = txt_or_null(t->name, &nulls[0]);
	v[1] = txt_or_null(t->language, &nulls[1]);
	v[2] = txt_or_null(t->template_id, &nulls[2]);
	v[3] = txt_or_null(t->event, &nulls[3]);
	v[4] = txt_or_null(t->reason, &nulls[4]);
	v[5] = txt_or_null(t->category, &nulls[5]);
	v[6] = txt_or_null(t->disable_date, &nulls[6]);
	v[7] = txt_or_null(t->other_title, &nulls[7]);
	v[8] = txt_or_null(t->other_description, &nulls[8]);
	exec(prep(&plan_template_cloud,
			  "SELECT wa_notify._template_status_update($1, $2, $3, $4, $5, $6, $7, $8, $9)",
			  9, types),
		 v, nulls, false, SPI_OK_SELECT);
}

/* template_category_update: the warning or the change (_template_category_update) */
static void
apply_template_category(const WhTemplateCategory *t, WhCounts *cnt)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		v[7];
	char		nulls[7];

	v[0] = txt_or_null(t->name, &nulls[0]);
	v[1] = txt_or_null(t->language, &nulls[1]);
	v[2] = txt_or_null(t->template_id, &nulls[2]);
	v[3] = txt_or_null(t->previous_category, &nulls[3]);
	v[4] = txt_or_null(t->new_category, &nulls[4]);
	v[5] = txt_or_null(t->correct_category, &nulls[5]);
	v[6] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) t->update_timestamp));
	nulls[6] = t->update_timestamp > 0 ? ' ' : 'n';
	exec(prep(&plan_category,
			  "SELECT wa_notify._template_category_update($1, $2, $3, $4, $5, $6, $7)", 7, types),
		 v, nulls, false, SPI_OK_SELECT);
	cnt->templates++;
}

/* message_template_quality_update (_template_quality_update) */
static void
apply_template_quality(const WhTemplateQuality *t, WhCounts *cnt)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[4];
	char		nulls[4];

	v[0] = txt_or_null(t->name, &nulls[0]);
	v[1] = txt_or_null(t->language, &nulls[1]);
	v[2] = txt_or_null(t->template_id, &nulls[2]);
	v[3] = txt_or_null(t->new_quality, &nulls[3]);
	exec(prep(&plan_template_quality,
			  "SELECT wa_notify._template_quality_update($1, $2, $3, $4)", 4, types),
		 v, nulls, false, SPI_OK_SELECT);
	cnt->quality++;
}

/*
 * A status's BSUID and pricing (_status_cloud), for the paths whose
 * statement does not record them (a failed status's BSUID, the locking
 * path), after the status matched the message and so recorded its wamid.
 * Nothing to do for a status without them (1.0's payloads).
 */
static void
apply_status_cloud(const WhStatus *st)
{
	Oid			types[5] = {TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID};
	Datum		v[5];
	char		nulls[5];

	bool		priced = st->kind == WH_ST_SENT || st->kind == WH_ST_DELIVERED ||
		st->kind == WH_ST_READ;

	/* pricing comes with sent, delivered and read statuses only */
	if (st->recipient_user_id == NULL &&
		(!priced || (st->billable < 0 && st->pricing_type == NULL && st->pricing_category == NULL)))
		return;
	v[0] = txt_or_null(st->wamid, &nulls[0]);
	v[1] = txt_or_null(st->recipient_user_id, &nulls[1]);
	v[2] = BoolGetDatum(st->billable == 1);
	nulls[2] = st->billable < 0 || !priced ? 'n' : ' ';
	v[3] = txt_or_null(priced ? st->pricing_type : NULL, &nulls[3]);
	v[4] = txt_or_null(priced ? st->pricing_category : NULL, &nulls[4]);
	exec(prep_generic(&plan_status_cloud,
					  "SELECT wa_notify._status_cloud($1, $2, $3, $4, $5)", 5, types),
		 v, nulls, false, SPI_OK_SELECT);
}

static void
apply_quality(const WhQuality *q, WhCounts *cnt)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		v[2];
	char		nulls[2] = {' ', ' '};
	const char *rating = q->quality_rating ? q->quality_rating : q->event;

	v[0] = rating ? txt(rating) : (Datum) 0;
	nulls[0] = rating ? ' ' : 'n';
	v[1] = q->current_limit ? txt(q->current_limit) : (Datum) 0;
	nulls[1] = q->current_limit ? ' ' : 'n';
	exec(prep(&plan_quality,
			  "UPDATE wa_notify.state SET quality_rating = coalesce($1, quality_rating),"
			  " messaging_limit = coalesce($2, messaging_limit), quality_updated_at = now()"
			  " WHERE quality_rating IS DISTINCT FROM coalesce($1, quality_rating)"
			  "    OR messaging_limit IS DISTINCT FROM coalesce($2, messaging_limit)"
			  "    OR quality_updated_at IS NULL", 2, types),
		 v, nulls, false, SPI_OK_UPDATE);
	cnt->quality += (int) SPI_processed;
}

/*
 * Record the callback.  "Last callback" has a one-second granularity: the
 * state row is rewritten only when the recorded time is older than that, so
 * concurrent callbacks do not queue on its row lock (the unknown-status
 * and unknown-number counters, rare, always write).  It never waits on that lock either (FOR
 * UPDATE SKIP LOCKED): while another transaction holds the state row (an
 * admin's configure() left open, the worker), the callback is not recorded,
 * nor its unknown statuses counted, rather than the webhook kept waiting.
 */
static void
record_callback(int unknown, int unknown_numbers)
{
	static TimestampTz last_recorded = 0;	/* by this backend */
	Oid			t[2] = {INT4OID, INT4OID};
	Datum		v[2];
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	/* recorded by this very backend less than a second ago: skip the query */
	if (unknown == 0 && unknown_numbers == 0 && last_recorded != 0 &&
		now >= last_recorded && now - last_recorded < USECS_PER_SEC)
		return;
	v[0] = Int32GetDatum(unknown);
	v[1] = Int32GetDatum(unknown_numbers);
	exec(prep(&plan_state,
			  "UPDATE wa_notify.state SET webhook_last_callback = now(),"
			  " webhook_unknown_statuses = webhook_unknown_statuses + $1,"
			  " webhook_unknown_numbers = webhook_unknown_numbers + $2"
			  " WHERE id IN (SELECT id FROM wa_notify.state"
			  "  WHERE $1 > 0 OR $2 > 0 OR webhook_last_callback IS NULL"
			  "     OR webhook_last_callback < now() - interval '" WH_LAST_CALLBACK_GRANULARITY "'"
			  "  FOR UPDATE SKIP LOCKED)",
			  2, t),
		 v, NULL, false, SPI_OK_UPDATE);
	/* (if this transaction rolls back, the next call within 1 s skips: harmless) */
	if (SPI_processed > 0)
		last_recorded = now;
}

/* ------------------------------------------------------------- senders */

/*
 * Webhooks per sender (issue 12, doc/webhooks.md "Several senders").
 *
 * Each "messages" change names its number, value.metadata.phone_number_id
 * (Meta's "messages webhook reference"); wa_notify._sender_for_phone_number_id()
 * says whose it is.  A change without metadata, and any number while the
 * default sender has no phone_number_id configured (a 1.0 install that never
 * named its number), is the default sender's.
 *
 * The signature: the body must be signed with the app secret of a sender
 * it names (that sender's own app_secret, else the global one); a body that
 * names no sender (only numbers that are no sender's, or only template and
 * quality changes, which name none) may be signed with the global secret or
 * any sender's own.  A status or message is then applied only when its
 * sender's secret is the one that signed: the others are refused (counted),
 * so a sender's secret never moves another sender's messages.  A number
 * that is no sender's is ignored and counted (state.webhook_unknown_numbers).
 *
 * The numbers of a body are looked up before its signature is checked
 * (they say whose secrets may have signed it), so that costs one statement
 * at most, whatever the body holds: the distinct numbers not known yet go
 * to _sender_for_phone_number_id() together.  The numbers that are a
 * sender's are kept per settings snapshot (wa_settings_version(): a change
 * to wa_notify.sender or the settings drops them), so the common call
 * costs no query for them; the others are not kept (a forged body full of
 * made-up numbers fills nothing).
 */
#define WH_ROUTES_CACHED 64
#define WH_NUMBER_MAX 64		/* a phone_number_id is ~15 digits; longer: no sender's */

static struct
{
	uint64		version;
	int			n;
	char	   *number[WH_ROUTES_CACHED];	/* malloc'd */
	char	   *sender[WH_ROUTES_CACHED];	/* malloc'd */
}			route_cache;

static SPIPlanPtr plan_sender_for_number;
static SPIPlanPtr plan_senders;

typedef struct WhNumber
{
	char		number[WH_NUMBER_MAX];	/* hash key */
	char	   *sender;			/* NULL: no sender's */
	bool		resolved;
} WhNumber;

static const char *
route_cache_find(const char *number)
{
	for (int i = 0; i < route_cache.n; i++)
		if (strcmp(route_cache.number[i], number) == 0)
			return route_cache.sender[i];
	return NULL;
}

static void
route_cache_add(const char *number, const char *sender)
{
	char	   *n;
	char	   *sd;

	if (route_cache.version == 0 || route_cache.n >= WH_ROUTES_CACHED)
		return;
	n = strdup(number);
	sd = strdup(sender);
	if (n == NULL || sd == NULL)
	{
		free(n);
		free(sd);
		return;
	}
	route_cache.number[route_cache.n] = n;
	route_cache.sender[route_cache.n] = sd;
	route_cache.n++;
}

/*
 * The sender of every number the payload names, in a hash table of
 * WhNumber (NULL when it names none).  One query for the numbers not kept.
 */
static HTAB *
resolve_numbers(const WhPayload *p, const WhSettings *set)
{
	uint64		version = wa_settings_version();
	HASHCTL		ctl;
	HTAB	   *numbers;
	WhNumber  **asked = palloc(sizeof(WhNumber *) * (p->nstatuses + p->ninbound + 1));
	int			nasked = 0;
	ArrayBuildState *ask = NULL;

	if (route_cache.version != version || version == 0)
	{
		for (int i = 0; i < route_cache.n; i++)
		{
			free(route_cache.number[i]);
			free(route_cache.sender[i]);
		}
		route_cache.n = 0;
		route_cache.version = version;
	}
	ctl.keysize = WH_NUMBER_MAX;
	ctl.entrysize = sizeof(WhNumber);
	ctl.hcxt = CurrentMemoryContext;
	numbers = hash_create("wa_notify webhook numbers", 16, &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (size_t i = 0; i < p->nstatuses + p->ninbound; i++)
	{
		const char *number = i < p->nstatuses ? p->statuses[i].phone_number_id
			: p->inbound[i - p->nstatuses].phone_number_id;
		bool		found;
		const char *cached;
		WhNumber   *e;

		if (number == NULL || strlen(number) >= WH_NUMBER_MAX)
			continue;
		e = hash_search(numbers, number, HASH_ENTER, &found);
		if (found)
			continue;
		cached = route_cache_find(number);
		e->sender = cached ? pstrdup(cached) : NULL;
		if (cached == NULL)
		{
			asked[nasked++] = e;
			ask = accumArrayResult(ask, txt(number), false, TEXTOID, CurrentMemoryContext);
		}
	}
	if (nasked > 0)
	{
		Oid			t = TEXTARRAYOID;
		Datum		v = makeArrayResult(ask, CurrentMemoryContext);

		/* as fresh as the settings snapshot the answers are kept with (settings.c) */
		if (SPI_execute_snapshot(prep(&plan_sender_for_number,
									  "SELECT wa_notify._sender_for_phone_number_id(n)"
									  " FROM unnest($1) WITH ORDINALITY AS u(n, i) ORDER BY i",
									  1, &t),
								 &v, NULL, GetLatestSnapshot(), InvalidSnapshot,
								 true, false, 0) != SPI_OK_SELECT || SPI_processed != (uint64) nasked)
			elog(ERROR, "webhook: cannot look the senders of numbers up");
		for (int r = 0; r < nasked; r++)
		{
			char	   *sender = col_text(r, 1);

			if (sender == NULL && set->phone_number_id == NULL)
				sender = pstrdup("default");	/* the default's number is not named */
			asked[r]->sender = sender;
			if (sender != NULL)
				route_cache_add(asked[r]->number, sender);
		}
	}
	return numbers;
}

/* The sender of a change's number (NULL: no sender's), from resolve_numbers(). */
static const char *
sender_of_number(HTAB *numbers, const char *number)
{
	WhNumber   *e;

	if (number == NULL)
		return "default";		/* a change without metadata */
	if (strlen(number) >= WH_NUMBER_MAX)
		return NULL;
	e = hash_search(numbers, number, HASH_FIND, NULL);
	return e ? e->sender : NULL;
}

/* The app secrets a body may be signed with, each once (wiped by secrets_wipe()). */
typedef struct WhSecrets
{
	int			n;
	char	  **secret;
	/* the senders named by the body, and the index of each one's secret */
	int			nsenders;
	const char **sender;
	int		   *secret_of;
} WhSecrets;

static int
secrets_add(WhSecrets *ss, char *secret)
{
	if (secret == NULL || secret[0] == '\0')
		return -1;
	for (int i = 0; i < ss->n; i++)
		if (strcmp(ss->secret[i], secret) == 0)
		{
			explicit_bzero(secret, strlen(secret));
			return i;
		}
	ss->secret[ss->n] = secret;
	return ss->n++;
}

/* a sender's app secret: its own, else the global one (secrets.c) */
static char *
app_secret_of(const char *sender)
{
	char	   *own = strcmp(sender, "default") == 0 ? NULL : wa_secret_get(sender, "app_secret");

	if (own != NULL && own[0] != '\0')
		return own;
	return wa_secret_get(NULL, "app_secret");
}

static int
secret_index_of_sender(const WhSecrets *ss, const char *sender)
{
	for (int i = 0; i < ss->nsenders; i++)
		if (strcmp(ss->sender[i], sender) == 0)
			return ss->secret_of[i];
	return -1;
}

static void
name_sender(WhSecrets *ss, const char *sender)
{
	if (sender == NULL)
		return;
	for (int i = 0; i < ss->nsenders; i++)
		if (strcmp(ss->sender[i], sender) == 0)
			return;
	ss->sender[ss->nsenders] = sender;
	ss->secret_of[ss->nsenders] = secrets_add(ss, app_secret_of(sender));
	ss->nsenders++;
}

/*
 * The secrets a body may be signed with: those of the senders it names;
 * when it names none, the global one and every sender's own.  Statuses'
 * and messages' senders are left in route (NULL: a number no sender has).
 */
static void
collect_secrets(const WhPayload *p, bool parsed, const WhSettings *set,
				WhSecrets *ss, WhRouting *route)
{
	size_t		max = (parsed ? p->nstatuses + p->ninbound : 0) + 1;

	memset(ss, 0, sizeof(*ss));
	route->status_sender = palloc0(sizeof(char *) * (parsed ? p->nstatuses + 1 : 1));
	route->inbound_sender = palloc0(sizeof(char *) * (parsed ? p->ninbound + 1 : 1));
	ss->sender = palloc0(sizeof(char *) * max);
	ss->secret_of = palloc0(sizeof(int) * max);
	ss->secret = palloc0(sizeof(char *) * max);
	if (parsed)
	{
		HTAB	   *numbers = resolve_numbers(p, set);

		for (size_t i = 0; i < p->nstatuses; i++)
			name_sender(ss, route->status_sender[i] =
						sender_of_number(numbers, p->statuses[i].phone_number_id));
		for (size_t i = 0; i < p->ninbound; i++)
			name_sender(ss, route->inbound_sender[i] =
						sender_of_number(numbers, p->inbound[i].phone_number_id));
	}
	if (ss->nsenders > 0)
		return;

	/* no sender named: the global secret, and each sender's own */
	secrets_add(ss, wa_secret_get(NULL, "app_secret"));
	exec(prep(&plan_senders, "SELECT sender FROM wa_notify.sender WHERE sender <> 'default' ORDER BY sender",
			  0, NULL), NULL, NULL, true, SPI_OK_SELECT);
	{
		uint64		nrows = SPI_processed;
		char	  **names = palloc(sizeof(char *) * (nrows + 1));

		for (uint64 r = 0; r < nrows; r++)
			names[r] = col_text((int) r, 1);
		ss->secret = repalloc(ss->secret, sizeof(char *) * (ss->n + nrows + 1));
		for (uint64 r = 0; r < nrows; r++)
			secrets_add(ss, wa_secret_get(names[r], "app_secret"));
	}
}

/* the same, freeing the payload (malloc'd) when it fails: a statement timeout must not leak it */
static pg_noinline void
collect_secrets_or_free(WhPayload *p, bool parsed, const WhSettings *set,
						WhSecrets *ss, WhRouting *route)
{
	PG_TRY();
	{
		collect_secrets(p, parsed, set, ss, route);
	}
	PG_CATCH();
	{
		wh_payload_free(p);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

static void
secrets_wipe(WhSecrets *ss)
{
	for (int i = 0; i < ss->n; i++)
		explicit_bzero(ss->secret[i], strlen(ss->secret[i]));
}

/*
 * After the signature checked with secret number signed: keep the senders
 * whose secret it is, refuse the others, count the numbers no sender has.
 */
static void
route_changes(const WhPayload *p, const WhSecrets *ss, int signed_by, WhRouting *route,
			  WhCounts *cnt)
{
	for (int pass = 0; pass < 2; pass++)
	{
		const char **senders = pass == 0 ? route->status_sender : route->inbound_sender;
		size_t		n = pass == 0 ? p->nstatuses : p->ninbound;

		for (size_t i = 0; i < n; i++)
		{
			if (senders[i] == NULL)
				cnt->unknown_numbers++;
			else if (secret_index_of_sender(ss, senders[i]) != signed_by)
			{
				cnt->refused++;
				senders[i] = NULL;
			}
		}
	}
}

/* ------------------------------------------------------- SQL functions */

static void
sha256(const char *s, unsigned char out[32])
{
	unsigned int outlen = 32;

	if (!EVP_Digest(s, strlen(s), out, &outlen, EVP_sha256(), NULL))
		elog(ERROR, "webhook: SHA-256 failed");
}

/*
 * wa_notify.webhook_receive(body bytea, signature text) RETURNS jsonb
 *
 * body is the raw POST body, byte for byte (bytea: no encoding conversion
 * can touch it); signature the X-Hub-Signature-256 header.  Returns counts
 * of what was applied.  Errors (none changes any row):
 *   22004 body is null, 54000 body over webhook_max_body,
 *   55000 app_secret not set, 28000 signature missing or wrong,
 *   22032 malformed payload, 22023 not a WhatsApp Business Account webhook.
 */
PG_FUNCTION_INFO_V1(wa_notify_webhook_receive);
Datum
wa_notify_webhook_receive(PG_FUNCTION_ARGS)
{
	bytea	   *body;
	const char *data;
	size_t		len;
	char	   *sig;
	WhSettings	set;
	unsigned char mac[32];
	unsigned char given[32];
	WhPayload	payload;
	WhParseResult pr;
	WhCounts	cnt = {0};
	WhSecrets	secrets;
	WhRouting	route;
	int			signed_by = -1;
	size_t		nstatuses;
	size_t		ninbound;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("webhook body is null"),
				 errhint("Pass the raw POST body as bytea.")));
	body = PG_GETARG_BYTEA_PP(0);
	data = VARDATA_ANY(body);
	len = VARSIZE_ANY_EXHDR(body);
	sig = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook: SPI_connect failed");
	load_settings(&set);

	if ((int64) len > set.max_body)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("webhook body too large"),
				 errdetail("The body has %zu bytes; the limit is " INT64_FORMAT " bytes.",
						   len, set.max_body),
				 errhint("Raise the setting webhook_max_body if Meta's payloads really are this large.")));
	/*
	 * Parsed before the signature is checked, to know the numbers whose
	 * secrets may have signed it (the parser is the fuzzed one); a parse
	 * error is reported only once the signature checked.  An unsigned body
	 * is not parsed.
	 */
	if (sig != NULL && sig[0] != '\0')
		pr = wh_parse(data, len, &payload);
	else
	{
		memset(&payload, 0, sizeof(payload));
		pr = WH_MALFORMED;
	}
	collect_secrets_or_free(&payload, pr == WH_OK, &set, &secrets, &route);
	if (secrets.n == 0)
	{
		wh_payload_free(&payload);
		secrets_wipe(&secrets);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("app secret is not configured"),
				 errdetail("Webhook signatures cannot be checked without the app secret.%s%s",
						   wa_secrets_problem() ? " The secrets file is refused: " : "",
						   wa_secrets_problem() ? wa_secrets_problem() : ""),
				 wa_secrets_file_set()
				 ? errhint("Add the line \"app_secret = ...\" to the file \"%s\" (wa_notify.secrets_file) and reload.", wa_secrets_file)
				 : errhint("Set it with wa_notify.configure(app_secret => ...).")));
	}
	if (sig == NULL || sig[0] == '\0')
	{
		secrets_wipe(&secrets);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("webhook signature is missing"),
				 errhint("Pass the X-Hub-Signature-256 header, \"sha256=\" followed by 64 hex digits.")));
	}

	/* decode failure still runs a comparison, against zeros */
	if (!wh_signature_decode(sig, strlen(sig), given))
		memset(given, 0, sizeof(given));
	for (int i = 0; i < secrets.n && signed_by < 0; i++)
	{
		wa_hmac_sha256(secrets.secret[i], data, len, mac);
		if (CRYPTO_memcmp(mac, given, sizeof(mac)) == 0)
			signed_by = i;
	}
	secrets_wipe(&secrets);
	if (signed_by < 0)
	{
		wh_payload_free(&payload);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("webhook signature does not match"),
				 errdetail("The X-Hub-Signature-256 header is not the HMAC-SHA256 of the body with the app secret."),
				 errhint("Check that the relay passes the body unchanged and that app_secret is the app's secret.")));
	}

	if (pr != WH_OK)
	{
		char		detail[sizeof(payload.error)];

		strlcpy(detail, payload.error, sizeof(detail));
		wh_payload_free(&payload);
		if (pr == WH_NOT_WABA)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("payload is not a WhatsApp Business Account webhook"),
					 errdetail("In the payload, %s.", detail),
					 errhint("Subscribe the app to the whatsapp_business_account object only.")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_JSON_TEXT),
				 errmsg("malformed webhook payload"),
				 errdetail("In the payload, %s.", detail)));
	}
	route_changes(&payload, &secrets, signed_by, &route, &cnt);

	nstatuses = payload.nstatuses;
	ninbound = payload.ninbound;
	PG_TRY();
	{
		for (size_t i = 0; i < payload.nstatuses; i++)
		{
			if (route.status_sender[i] != NULL)
				apply_status(&payload.statuses[i], route.status_sender[i], &cnt);
		}
		apply_inbound(&payload, &route, &set, &cnt);
		apply_system_messages(&payload, &route);
		for (size_t i = 0; i < payload.ntemplates; i++)
		{
			apply_template(&payload.templates[i], &set, &cnt);
			apply_template_cloud(&payload.templates[i]);
		}
		for (size_t i = 0; i < payload.ncategories; i++)
			apply_template_category(&payload.categories[i], &cnt);
		for (size_t i = 0; i < payload.ntemplate_quality; i++)
			apply_template_quality(&payload.template_quality[i], &cnt);
		for (size_t i = 0; i < payload.nquality; i++)
			apply_quality(&payload.quality[i], &cnt);
		cnt.ignored += (int) payload.nignored;
		record_callback(cnt.unknown, cnt.unknown_numbers);
	}
	PG_FINALLY();
	{
		wh_payload_free(&payload);
	}
	PG_END_TRY();

	SPI_finish();
	{
		/* built directly (no text round trip); jsonb orders the keys */
		const char *const keys[] = {"statuses", "applied", "unchanged", "unknown", "ignored",
		"inbound", "opt_outs", "templates", "quality"};
		const int64 vals[] = {(int64) nstatuses, cnt.applied, cnt.unchanged, cnt.unknown,
			cnt.ignored, (int64) ninbound, cnt.opt_outs, cnt.templates, cnt.quality};
		JsonbParseState *state = NULL;
		JsonbValue *res;

		/* issue 12's counts, present only when not zero (1.0's keys are always there) */
		const char *const rare_keys[] = {"unknown_numbers", "refused"};
		const int64 rare_vals[] = {cnt.unknown_numbers, cnt.refused};

		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		for (size_t i = 0; i < lengthof(keys) + lengthof(rare_keys); i++)
		{
			JsonbValue	k;
			JsonbValue	v;
			bool		rare = i >= lengthof(keys);
			const char *key = rare ? rare_keys[i - lengthof(keys)] : keys[i];
			int64		val = rare ? rare_vals[i - lengthof(keys)] : vals[i];

			if (rare && val == 0)
				continue;

			k.type = jbvString;
			k.val.string.val = (char *) key;
			k.val.string.len = strlen(key);
			pushJsonbValue(&state, WJB_KEY, &k);
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(val)));
			pushJsonbValue(&state, WJB_VALUE, &v);
		}
		res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
		PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
	}
}

/*
 * wa_notify.webhook_verify(mode text, token text, challenge text) RETURNS text
 *
 * Meta's GET handshake: the challenge when mode is "subscribe" and token is
 * the verify token (constant-time comparison), else NULL.  Records
 * state.webhook_last_verified on success.
 */
PG_FUNCTION_INFO_V1(wa_notify_webhook_verify);
Datum
wa_notify_webhook_verify(PG_FUNCTION_ARGS)
{
	char	   *mode = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *token = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *expected = NULL;
	unsigned char h1[32];
	unsigned char h2[32];
	bool		ok;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook: SPI_connect failed");
	expected = wa_secret_get(NULL, "webhook_verify_token");

	/* compare digests, so that the time taken says nothing about the token */
	sha256(token ? token : "", h1);
	sha256(expected ? expected : "", h2);
	ok = CRYPTO_memcmp(h1, h2, sizeof(h1)) == 0;
	ok = ok && expected != NULL && expected[0] != '\0' && token != NULL &&
		mode != NULL && strcmp(mode, "subscribe") == 0 && !PG_ARGISNULL(2);

	if (ok)
	{
		if (SPI_execute("UPDATE wa_notify.state SET webhook_last_verified = now()",
						false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "webhook: cannot record the verification");
	}
	SPI_finish();
	if (!ok)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(2));
}
