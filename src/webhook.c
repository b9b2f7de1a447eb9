/*-------------------------------------------------------------------------
 * webhook.c
 *	  Meta's webhooks (SPEC section 4): wa_notify.webhook_verify(), the GET
 *	  handshake, and wa_notify.webhook_receive(), which checks the
 *	  X-Hub-Signature-256 HMAC over the raw body and applies every change of
 *	  the payload in the caller's transaction:
 *	    - statuses sent/delivered/read/failed, monotonic (a status never
 *	      moves a message backwards, a repeat changes nothing, each
 *	      timestamp column is filled once), matched by wamid, else by
 *	      biz_opaque_callback_data ("<id>.<mac>", secrets.c) when its MAC
 *	      checks, the message was claimed and the recipient is its phone;
 *	    - failures classified by the shared Graph error table
 *	      (graph_errors.h): blacklist, hint, held event, paused account;
 *	    - inbound opt-out keywords -> blacklist (source opt_out);
 *	    - template status updates -> wa_notify.event;
 *	    - phone number quality updates -> wa_notify.state.
 *
 *	  The payload is parsed by the pure parser in webhook_parse.c (also
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
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "graph_errors.h"
#include "wa_notify.h"
#include "webhook_parse.h"

/* Default cap on a webhook body: Meta's payloads are at most 3 MB. */
#define WH_DEFAULT_MAX_BODY (3 * 1024 * 1024)

/* "last callback" is rewritten at most this often (seconds), see below */
#define WH_LAST_CALLBACK_GRANULARITY "1 second"

typedef struct WhSettings
{
	char	   *app_secret;
	char	   *default_language;
	char	   *default_country_code;
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
} WhCounts;

/* plans kept for the life of the backend */
static SPIPlanPtr plan_settings;
static SPIPlanPtr plan_by_wamid;
static SPIPlanPtr plan_by_id;
static SPIPlanPtr plan_update;
static SPIPlanPtr plan_blacklist;
static SPIPlanPtr plan_hold;
static SPIPlanPtr plan_pause;
static SPIPlanPtr plan_cooldown;
static SPIPlanPtr plan_keywords;
static SPIPlanPtr plan_optout;
static SPIPlanPtr plan_template;
static SPIPlanPtr plan_quality;
static SPIPlanPtr plan_state;

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

static void
load_settings(WhSettings *s)
{
	s->app_secret = NULL;
	s->default_language = NULL;
	s->default_country_code = NULL;
	s->max_body = WH_DEFAULT_MAX_BODY;

	exec(prep(&plan_settings,
			  "SELECT name, value FROM wa_notify.setting"
			  " WHERE name IN ('default_language',"
			  " 'default_country_code', 'webhook_max_body')", 0, NULL),
		 NULL, NULL, true, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = col_text(i, 1);
		char	   *value = col_text(i, 2);

		if (value == NULL)
			continue;
		if (strcmp(name, "default_language") == 0)
			s->default_language = value;
		else if (strcmp(name, "default_country_code") == 0)
			s->default_country_code = value;
		else if (strcmp(name, "webhook_max_body") == 0)
		{
			char	   *end;
			long long	v = strtoll(value, &end, 10);

			if (*end == '\0' && v > 0)
				s->max_body = v;
		}
	}
	/* the secrets file when set, else the secret row (secrets.c) */
	s->app_secret = wa_secret_get(NULL, "app_secret");
}

/* ------------------------------------------------------------ statuses */

/* 0 before sending, 1 sent, 2 delivered, 3 read; -1 failed; -2 other */
static int
status_rank(const char *st)
{
	if (strcmp(st, "queued") == 0 || strcmp(st, "sending") == 0 ||
		strcmp(st, "review") == 0)
		return 0;
	if (strcmp(st, "sent") == 0)
		return 1;
	if (strcmp(st, "delivered") == 0)
		return 2;
	if (strcmp(st, "read") == 0)
		return 3;
	if (strcmp(st, "failed") == 0)
		return -1;
	return -2;					/* skipped, expired: never sent */
}

static const char *
rank_status(int rank)
{
	switch (rank)
	{
		case 1:
			return "sent";
		case 2:
			return "delivered";
		case 3:
			return "read";
		default:
			return "failed";
	}
}

#define MSG_COLS "id, status, sent_at, delivered_at, read_at, failed_at, wamid, wa_id," \
	" error_code, error_message, error_class, phone, event"
enum
{
	C_ID = 1, C_STATUS, C_SENT, C_DELIVERED, C_READ, C_FAILED, C_WAMID, C_WAID,
	C_ERRCODE, C_ERRMSG, C_ERRCLASS, C_PHONE, C_EVENT, NCOLS = C_EVENT
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
 * Whom a failed status's effects (blacklist) apply to: the recipient the
 * status names; the message's phone when that is the same number (it has
 * the ninth digit the WhatsApp id may lack) or the status names none.
 */
static const char *
failure_recipient(const WhStatus *st, const char *phone)
{
	if (st->recipient_id == NULL || st->recipient_id[0] == '\0' ||
		same_recipient(st->recipient_id, phone))
		return phone ? phone : st->recipient_id;
	return st->recipient_id;
}

/*
 * Find and lock the message a status is about; false when none matches.
 * By wamid; else by biz_opaque_callback_data, which matches only when its
 * MAC checks (secrets.c: the request came from this install), the message
 * was claimed for sending, has no other wamid, and the status's recipient
 * is the message's phone: a status from another sender on the number (a
 * CRM, a reinstalled database whose ids start again at 1) never matches.
 */
static bool
find_message(const WhStatus *st)
{
	Oid			t_text = TEXTOID;
	Oid			t_int8 = INT8OID;
	Datum		v[1];
	int64		id;
	bool		isnull;

	v[0] = txt(st->wamid);
	exec(prep(&plan_by_wamid,
			  "SELECT " MSG_COLS " FROM wa_notify.message WHERE wamid = $1"
			  " ORDER BY id LIMIT 1 FOR UPDATE", 1, &t_text),
		 v, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
		return true;

	if (!wa_callback_data_check(st->biz_opaque, &id) ||
		st->recipient_id == NULL || st->recipient_id[0] == '\0')
		return false;
	v[0] = Int64GetDatum(id);
	exec(prep(&plan_by_id,
			  "SELECT " MSG_COLS " FROM wa_notify.message WHERE id = $1"
			  " AND status IN (" CLAIMED_STATUSES ") FOR UPDATE",
			  1, &t_int8),
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

/* Blacklist a number unless it is already there (source as given). */
static void
blacklist(const char *e164, const char *reason, const char *source, int code)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, INT4OID};
	Datum		v[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	char		plus[WA_PHONE_MAXLEN + 1];

	snprintf(plus, sizeof(plus), "+%s", e164);
	v[0] = CStringGetTextDatum(plus);
	v[1] = CStringGetTextDatum(reason);
	v[2] = CStringGetTextDatum(source);
	v[3] = Int32GetDatum(code);
	if (code < 0)
		nulls[3] = 'n';
	exec(prep(&plan_blacklist,
			  "SELECT wa_notify._blacklist($1, $2, $3, $4)"
			  " WHERE NOT EXISTS (SELECT 1 FROM wa_notify.blocked"
			  "  WHERE phone_key = wa_notify.phone_key(ltrim($1, '+')))", 4, types),
		 v, nulls, false, SPI_OK_SELECT);
}

/* What happens beyond the message when Meta reports a failure. */
static void
apply_failure_effects(const WaGraphError *ge, int code, const char *reason,
					  const char *phone, const char *event, const WhSettings *set)
{
	switch (ge->cls)
	{
		case WA_ERR_RECIPIENT:
			{
				char	   *e164 = to_e164(phone, set->default_country_code);

				if (e164)
					blacklist(e164, reason, ge->blacklist_source ? ge->blacklist_source : "auto", code);
				else
					ereport(WARNING,
							(errmsg("webhook: cannot blacklist recipient \"%s\": not a phone number", phone)));
				break;
			}
		case WA_ERR_TEMPLATE:
			{
				Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
				Datum		v[3];

				v[0] = CStringGetTextDatum(event);
				v[1] = CStringGetTextDatum(reason);
				v[2] = Int32GetDatum(code);
				exec(prep(&plan_hold,
						  "UPDATE wa_notify.event SET held_reason = $2, held_code = $3, held_at = now()"
						  " WHERE event = $1 AND (held_code IS DISTINCT FROM $3 OR held_reason IS NULL)",
						  3, types),
					 v, NULL, false, SPI_OK_UPDATE);
				break;
			}
		case WA_ERR_ACCOUNT:
			{
				Oid			types[2] = {TEXTOID, INT4OID};
				Datum		v[2];

				v[0] = CStringGetTextDatum(reason);
				v[1] = Int32GetDatum(code);
				exec(prep(&plan_pause, "SELECT wa_notify._pause_dispatch($1, $2)", 2, types),
					 v, NULL, false, SPI_OK_SELECT);
				break;
			}
		case WA_ERR_THROTTLED:
			if (code == 131048)
			{
				/* spam rate limit: a cool-down for all sending */
				exec(prep(&plan_cooldown, "SELECT wa_notify._spam_cooldown()", 0, NULL),
					 NULL, NULL, false, SPI_OK_SELECT);
			}
			break;
		default:
			break;
	}
}

/*
 * A failed status's error: its class, the reason (blacklist, hold, pause)
 * and the message's error_message (the reason, plus the hint of a
 * message-class error), both in the database encoding.
 */
static const WaGraphError *
failure_texts(const WhStatus *st, char **reason, char **errmsg)
{
	const WaGraphError *ge = wa_graph_error_lookup(st->error_code, 400);
	StringInfoData r;

	initStringInfo(&r);
	if (st->error_code >= 0)
		appendStringInfo(&r, "(#%d) ", st->error_code);
	appendStringInfoString(&r, st->error_message ? st->error_message :
						   st->error_title ? st->error_title : ge->title);
	if (st->error_details && st->error_details[0])
		appendStringInfo(&r, ": %s", st->error_details);
	*reason = pstrdup(pg_any_to_server(r.data, r.len, PG_UTF8));
	if (ge->cls == WA_ERR_MESSAGE && ge->hint)
		appendStringInfo(&r, " Hint: %s", ge->hint);
	*errmsg = pg_any_to_server(r.data, r.len, PG_UTF8);
	return ge;
}

/*
 * The general path: find and lock the message (by wamid, else by
 * biz_opaque_callback_data), work the change out here, update it by id.
 * apply_status() tries the one-statement path first and comes here for
 * whatever that did not settle.
 */
static void
apply_status_locked(const WhStatus *st, const WhSettings *set, WhCounts *cnt)
{
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		v[NCOLS];
	bool		isnull[NCOLS];
	char		nulls[NCOLS];
	int			cur;
	int			newrank;
	bool		changed = false;
	bool		to_failed = false;
	TimestampTz ts;
	char	   *phone;
	char	   *event;
	const WaGraphError *ge = NULL;
	char	   *reason = NULL;

	if (!find_message(st))
	{
		cnt->unknown++;
		return;
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
	phone = isnull[C_PHONE - 1] ? NULL : TextDatumGetCString(v[C_PHONE - 1]);
	event = TextDatumGetCString(v[C_EVENT - 1]);
	ts = st->timestamp > 0 ? time_t_to_timestamptz((pg_time_t) st->timestamp)
		: GetCurrentTimestamp();

#define SET_IF_NULL(col, datum) \
	do { if (isnull[(col) - 1]) { v[(col) - 1] = (datum); isnull[(col) - 1] = false; changed = true; } } while (0)

	if (cur == -2)
	{
		/* skipped or expired: never sent, a status for it is noise */
		cnt->ignored++;
		return;
	}

	switch (st->kind)
	{
		case WH_ST_SENT:
		case WH_ST_DELIVERED:
		case WH_ST_READ:
			newrank = st->kind == WH_ST_SENT ? 1 : st->kind == WH_ST_DELIVERED ? 2 : 3;
			/* forward only; delivered/read also prove a "failed" one arrived */
			if ((cur >= 0 && newrank > cur) || (cur == -1 && newrank >= 2))
			{
				v[C_STATUS - 1] = CStringGetTextDatum(rank_status(newrank));
				changed = true;
			}
			SET_IF_NULL(st->kind == WH_ST_SENT ? C_SENT :
							st->kind == WH_ST_DELIVERED ? C_DELIVERED : C_READ,
							TimestampTzGetDatum(ts));
			break;
		case WH_ST_FAILED:
			if (cur >= 0 && cur <= 1)
			{
				char	   *errmsg;

				to_failed = true;
				changed = true;
				ge = failure_texts(st, &reason, &errmsg);
				v[C_STATUS - 1] = CStringGetTextDatum("failed");
				v[C_FAILED - 1] = TimestampTzGetDatum(ts);
				isnull[C_FAILED - 1] = false;
				v[C_ERRCODE - 1] = Int32GetDatum(st->error_code);
				isnull[C_ERRCODE - 1] = st->error_code < 0;
				v[C_ERRMSG - 1] = CStringGetTextDatum(errmsg);
				isnull[C_ERRMSG - 1] = false;
				v[C_ERRCLASS - 1] = CStringGetTextDatum(wa_error_class_name(ge->cls));
				isnull[C_ERRCLASS - 1] = false;
			}
			break;
		default:
			break;
	}
	/* found by biz_opaque_callback_data: learn the wamid; and the wa_id */
	if (st->kind != WH_ST_OTHER)
	{
		SET_IF_NULL(C_WAMID, txt(st->wamid));
		if (st->recipient_id && st->recipient_id[0])
			SET_IF_NULL(C_WAID, txt(st->recipient_id));
	}
	if (!changed)
	{
		cnt->unchanged++;
		return;
	}

	{
		Oid			types[NCOLS - 2] = {INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
			TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID};

		for (int i = 0; i < NCOLS; i++)
			nulls[i] = isnull[i] ? 'n' : ' ';
		exec(prep(&plan_update,
				  "UPDATE wa_notify.message SET status = $2, sent_at = $3, delivered_at = $4,"
				  " read_at = $5, failed_at = $6, wamid = $7, wa_id = $8, error_code = $9,"
				  " error_message = $10, error_class = $11, updated_at = now() WHERE id = $1",
				  NCOLS - 2, types),
			 v, nulls, false, SPI_OK_UPDATE);
	}
	cnt->applied++;

	if (to_failed)
		apply_failure_effects(ge, st->error_code, reason,
							  failure_recipient(st, phone), event, set);
}

/* ------------------------------------------------- statuses: fast path */

/*
 * The common case, one statement per status: an UPDATE by wamid that moves
 * the message forward only (the status rank and the timestamp columns in the
 * statement itself, see status_rank()), and whose WHERE clause lets a no-op
 * repeat change nothing (no new row version, no transaction id, no WAL).
 * When it changes nothing, a plain SELECT tells an unchanged (or ignored)
 * message from anything else; "anything else" (no message by that wamid,
 * the biz_opaque_callback_data match, a row changed concurrently between the
 * two statements) takes the locking path, apply_status_locked(), whose
 * outcome the fast path never differs from.
 */

/* statuses a status moves a message from (its rank is higher, see status_rank) */
#define FROM_SENT		"'queued', 'sending', 'review'"
#define FROM_DELIVERED	FROM_SENT ", 'sent', 'failed'"
#define FROM_READ		FROM_DELIVERED ", 'delivered'"
#define FROM_FAILED		FROM_SENT ", 'sent'"

/* sent, delivered, read: $1 wamid, $2 timestamp, $3 wa_id (or NULL) */
#define FAST_FORWARD(st, from, col) \
	"UPDATE wa_notify.message SET status = CASE WHEN status IN (" from ") THEN '" st "' ELSE status END," \
	" " col " = coalesce(" col ", $2), wa_id = coalesce(wa_id, $3), updated_at = now()" \
	" WHERE wamid = $1 AND (status IN (" from ") OR (status NOT IN ('skipped', 'expired')" \
	" AND (" col " IS NULL OR (wa_id IS NULL AND $3 IS NOT NULL))))"
/* $1 wamid, $2 wa_id (or NULL): is it ignored, would the status change it */
#define CHECK_FORWARD(from, col) \
	"SELECT status IN ('skipped', 'expired'), status IN (" from ") OR " col " IS NULL" \
	" OR (wa_id IS NULL AND $2 IS NOT NULL)" \
	" FROM wa_notify.message WHERE wamid = $1 ORDER BY id LIMIT 1"

static const char *const fast_sql[] = {
	[WH_ST_SENT] = FAST_FORWARD("sent", FROM_SENT, "sent_at"),
	[WH_ST_DELIVERED] = FAST_FORWARD("delivered", FROM_DELIVERED, "delivered_at"),
	[WH_ST_READ] = FAST_FORWARD("read", FROM_READ, "read_at"),
	/* $4 error_code, $5 error_message, $6 error_class: the transition only */
	[WH_ST_FAILED] =
	"UPDATE wa_notify.message SET status = 'failed', failed_at = $2, wa_id = coalesce(wa_id, $3),"
	" error_code = $4, error_message = $5, error_class = $6, updated_at = now()"
	" WHERE wamid = $1 AND status IN (" FROM_FAILED ") RETURNING phone, event",
};
static const char *const check_sql[] = {
	[WH_ST_SENT] = CHECK_FORWARD(FROM_SENT, "sent_at"),
	[WH_ST_DELIVERED] = CHECK_FORWARD(FROM_DELIVERED, "delivered_at"),
	[WH_ST_READ] = CHECK_FORWARD(FROM_READ, "read_at"),
	[WH_ST_FAILED] =
	"SELECT status IN ('skipped', 'expired'), status IN (" FROM_FAILED ")"
	" OR (wa_id IS NULL AND $2 IS NOT NULL)"
	" FROM wa_notify.message WHERE wamid = $1 ORDER BY id LIMIT 1",
};
static SPIPlanPtr plan_fast[lengthof(fast_sql)];
static SPIPlanPtr plan_check[lengthof(check_sql)];

static void
apply_status(const WhStatus *st, const WhSettings *set, WhCounts *cnt)
{
	static const Oid fast_types[6] = {TEXTOID, TIMESTAMPTZOID, TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		v[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	const WaGraphError *ge = NULL;
	char	   *reason = NULL;
	int			nargs = 3;
	bool		failed = st->kind == WH_ST_FAILED;

	if (st->kind == WH_ST_OTHER)
	{
		cnt->ignored++;
		return;
	}

	v[0] = txt(st->wamid);
	v[1] = TimestampTzGetDatum(st->timestamp > 0 ?
							   time_t_to_timestamptz((pg_time_t) st->timestamp) :
							   GetCurrentTimestamp());
	if (st->recipient_id && st->recipient_id[0])
		v[2] = txt(st->recipient_id);
	else
		nulls[2] = 'n';
	if (failed)
	{
		char	   *errmsg;

		ge = failure_texts(st, &reason, &errmsg);
		v[3] = Int32GetDatum(st->error_code);
		nulls[3] = st->error_code < 0 ? 'n' : ' ';
		v[4] = CStringGetTextDatum(errmsg);
		v[5] = CStringGetTextDatum(wa_error_class_name(ge->cls));
		nargs = 6;
	}
	exec(prep_generic(&plan_fast[st->kind], fast_sql[st->kind], nargs, (Oid *) fast_types),
		 v, nulls, false, failed ? SPI_OK_UPDATE_RETURNING : SPI_OK_UPDATE);
	if (SPI_processed > 0)
	{
		cnt->applied++;
		if (failed)
		{
			char	   *phone = col_text(0, 1);
			char	   *event = col_text(0, 2);

			apply_failure_effects(ge, st->error_code, reason,
								  failure_recipient(st, phone), event, set);
		}
		return;
	}

	/* nothing changed: a repeat (or an ignored message) when the row says so */
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		cv[2] = {v[0], v[2]};
		char		cnulls[2] = {' ', nulls[2]};

		exec(prep_generic(&plan_check[st->kind], check_sql[st->kind], 2, types),
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
				cnt->unchanged++;
				return;
			}
		}
	}
	apply_status_locked(st, set, cnt);
}

/* ------------------------------------------------------------- inbound */

static void
apply_inbound(const WhPayload *p, const WhSettings *set, WhCounts *cnt)
{
	char	  **keys = NULL;
	char	  **norm = NULL;
	int			nkeys = 0;
	bool		any = false;

	for (size_t i = 0; i < p->ninbound; i++)
		if (p->inbound[i].text)
			any = true;
	if (!any)
		return;

	exec(prep(&plan_keywords,
			  "SELECT k FROM unnest((SELECT value FROM wa_notify.setting"
			  " WHERE name = 'opt_out_keywords')::text[]) AS k WHERE k <> ''", 0, NULL),
		 NULL, NULL, true, SPI_OK_SELECT);
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

		if (in->text == NULL || strlen(in->text) > 200)
			continue;
		wh_keyword_normalize(in->text, buf, sizeof(buf));
		for (int k = 0; k < nkeys; k++)
		{
			if (norm[k][0] != '\0' && strcmp(buf, norm[k]) == 0)
			{
				char	   *e164 = to_e164(in->from, set->default_country_code);
				Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
				Datum		v[3];

				if (e164 == NULL)
				{
					ereport(WARNING,
							(errmsg("webhook: opt-out from \"%s\" ignored: not a phone number", in->from)));
					break;
				}
				v[0] = CStringGetTextDatum(psprintf("+%s", e164));
				v[1] = CStringGetTextDatum(psprintf("opt-out keyword \"%s\"", keys[k]));
				v[2] = CStringGetTextDatum(e164);
				exec(prep(&plan_optout,
						  "SELECT wa_notify._blacklist($1, $2, 'opt_out', NULL)"
						  " WHERE NOT EXISTS (SELECT 1 FROM wa_notify.blocked"
						  "  WHERE phone_key = wa_notify.phone_key($3) AND source = 'opt_out')",
						  3, types),
					 v, NULL, false, SPI_OK_SELECT);
				if (SPI_processed > 0)
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
	v[4] = CStringGetTextDatum(set->default_language ? set->default_language : "pt_BR");
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
 * counter, rare, always writes).
 */
static void
record_callback(int unknown)
{
	static TimestampTz last_recorded = 0;	/* by this backend */
	Oid			t = INT4OID;
	Datum		v[1];
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	/* recorded by this very backend less than a second ago: skip the query */
	if (unknown == 0 && last_recorded != 0 &&
		now >= last_recorded && now - last_recorded < USECS_PER_SEC)
		return;
	v[0] = Int32GetDatum(unknown);
	exec(prep(&plan_state,
			  "UPDATE wa_notify.state SET webhook_last_callback = now(),"
			  " webhook_unknown_statuses = webhook_unknown_statuses + $1"
			  " WHERE $1 > 0 OR webhook_last_callback IS NULL"
			  "    OR webhook_last_callback < now() - interval '" WH_LAST_CALLBACK_GRANULARITY "'",
			  1, &t),
		 v, NULL, false, SPI_OK_UPDATE);
	/* (if this transaction rolls back, the next call within 1 s skips: harmless) */
	if (SPI_processed > 0)
		last_recorded = now;
}

/* ------------------------------------------------------- SQL functions */

static void
hmac_sha256(const char *key, const unsigned char *data, size_t len, unsigned char out[32])
{
	unsigned int outlen = 32;

	if (HMAC(EVP_sha256(), key, (int) strlen(key), data, len, out, &outlen) == NULL ||
		outlen != 32)
		elog(ERROR, "webhook: HMAC-SHA256 failed");
}

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
	if (set.app_secret == NULL || set.app_secret[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("app secret is not configured"),
				 errdetail("Webhook signatures cannot be checked without the app secret.%s%s",
						   wa_secrets_problem() ? " The secrets file is refused: " : "",
						   wa_secrets_problem() ? wa_secrets_problem() : ""),
				 wa_secrets_file_set()
				 ? errhint("Add the line \"app_secret = ...\" to the file \"%s\" (wa_notify.secrets_file) and reload.", wa_secrets_file)
				 : errhint("Set it with wa_notify.configure(app_secret => ...).")));
	if (sig == NULL || sig[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("webhook signature is missing"),
				 errhint("Pass the X-Hub-Signature-256 header, \"sha256=\" followed by 64 hex digits.")));

	hmac_sha256(set.app_secret, (const unsigned char *) data, len, mac);
	explicit_bzero(set.app_secret, strlen(set.app_secret));
	/* decode failure still runs a comparison, against zeros */
	if (!wh_signature_decode(sig, strlen(sig), given))
		memset(given, 0, sizeof(given));
	if (CRYPTO_memcmp(mac, given, sizeof(mac)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("webhook signature does not match"),
				 errdetail("The X-Hub-Signature-256 header is not the HMAC-SHA256 of the body with the app secret."),
				 errhint("Check that the relay passes the body unchanged and that app_secret is the app's secret.")));

	pr = wh_parse(data, len, &payload);
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

	nstatuses = payload.nstatuses;
	ninbound = payload.ninbound;
	PG_TRY();
	{
		for (size_t i = 0; i < payload.nstatuses; i++)
			apply_status(&payload.statuses[i], &set, &cnt);
		apply_inbound(&payload, &set, &cnt);
		for (size_t i = 0; i < payload.ntemplates; i++)
			apply_template(&payload.templates[i], &set, &cnt);
		for (size_t i = 0; i < payload.nquality; i++)
			apply_quality(&payload.quality[i], &cnt);
		cnt.ignored += (int) payload.nignored;
		record_callback(cnt.unknown);
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

		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		for (size_t i = 0; i < lengthof(keys); i++)
		{
			JsonbValue	k;
			JsonbValue	v;

			k.type = jbvString;
			k.val.string.val = (char *) keys[i];
			k.val.string.len = strlen(keys[i]);
			pushJsonbValue(&state, WJB_KEY, &k);
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(vals[i])));
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
