/*-------------------------------------------------------------------------
 * graph_errors.c
 *	  The one table of Graph API / WhatsApp Cloud API error codes: for each
 *	  code its class and what it does (the message's fate after a send,
 *	  blacklist source, template hold and status, account pause, cool-down,
 *	  rate feedback).  Nothing else in wa_notify names an error code.
 *
 *	  C owns the table and the lookup: the worker needs the class at once,
 *	  in the send loop (stop the batch, skip an event's or a recipient's
 *	  unstarted requests), without a query.  SQL reads the same rows: the
 *	  view wa_notify.graph_errors (wa_notify._graph_error_table()) and one
 *	  row per failure, wa_notify._graph_error(code, http), which
 *	  wa_notify._apply_error() (src/sql/1.1/30_dispatch.sql) turns into
 *	  UPDATEs for the dispatcher and the webhook alike.  Also
 *	  wa_notify.graph_error_class() (1.0).
 *
 *	  Codes and meanings follow Meta's "WhatsApp error codes" page
 *	  (developers.facebook.com/documentation/business-messaging/whatsapp/
 *	  support/error-codes).  error_subcode is deprecated and not used;
 *	  error_data.details carries the readable text.  The cool-down length
 *	  is wa_notify's choice: Meta gives none.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "access/htup_details.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "graph_errors.h"

static const WaGraphError graph_errors[] = {
	/* recipient unreachable */
	{131026, WA_ERR_RECIPIENT, "auto", NULL, 0, "message undeliverable",
	"The number is not on WhatsApp, has not accepted the current terms, or uses an old app; it was blacklisted.", 0, 0},
	{131021, WA_ERR_RECIPIENT, "auto", NULL, 0, "recipient cannot be the sender",
	"The recipient is the business's own number; it was blacklisted.", 0, 0},
	{130403, WA_ERR_RECIPIENT, "auto", NULL, 0, "this business blocked the user",
	"The business blocked this user in WhatsApp; unblock in WhatsApp Manager and then unblock() here.", 0, 0},
	{131050, WA_ERR_RECIPIENT, "opt_out", NULL, 0, "user stopped marketing messages from this business",
	"The customer opted out; Meta says not to retry. The number was blacklisted as opt_out.", 0, 0},

	/* this message only */
	{131047, WA_ERR_MESSAGE, NULL, NULL, 0, "re-engagement message: more than 24 hours since the customer's last reply",
	"Free-form text is refused outside the 24-hour window; turn templates on (configure(use_templates => true)).", 0, 0},
	{470, WA_ERR_MESSAGE, NULL, NULL, 0, "message sent outside the 24-hour window (legacy code)",
	"Free-form text is refused outside the 24-hour window; turn templates on (configure(use_templates => true)).", 0, 0},
	{131051, WA_ERR_MESSAGE, NULL, NULL, 0, "unsupported message type",
	"Use a template or text message.", 0, 0},
	/* 131049: never blacklisted; tried again 24 h after the failure, twice */
	{131049, WA_ERR_MESSAGE, NULL, NULL, 0, "Meta chose not to deliver (per-user marketing limit)",
	"Meta limits the marketing messages one customer gets; wa_notify tries again after 24 hours, at most twice.",
	24 * 3600, 2},
	{131062, WA_ERR_MESSAGE, NULL, NULL, 0, "business-scoped user ID not accepted for this message type",
	"This message type needs the customer's phone number; the context must return a phone, not a user ID.", 0, 0},
	{100, WA_ERR_MESSAGE, NULL, NULL, 0, "invalid parameter",
	"Check the event's template parameters and the message's phone with preview().", 0, 0},
	{131008, WA_ERR_MESSAGE, NULL, NULL, 0, "required parameter is missing",
	"Check the event's template parameters with preview().", 0, 0},
	{131009, WA_ERR_MESSAGE, NULL, NULL, 0, "parameter value is not valid",
	"Check the phone number and the template parameters with preview().", 0, 0},
	{135000, WA_ERR_MESSAGE, NULL, NULL, 0, "generic user error (bad or missing parameter)",
	"Check the message with preview().", 0, 0},
	{130497, WA_ERR_MESSAGE, NULL, NULL, 0, "business account is restricted from messaging users in this country",
	"The recipient's country is barred for this account; nothing to retry.", 0, 0},
	{130472, WA_ERR_MESSAGE, NULL, NULL, 0, "user's number is part of an experiment",
	"Meta held this marketing message back for an experiment; nothing to retry.", 0, 0},
	{131030, WA_ERR_MESSAGE, NULL, NULL, 0, "recipient phone number not in allowed list",
	"The sender is a test number; add the recipient to the allowed list in the app dashboard or use a production number.", 0, 0},

	/* event's template broken */
	{132000, WA_ERR_TEMPLATE, NULL, NULL, 0, "template parameter count mismatch",
	"Make configure_event(params => ...) list exactly the template's {{n}} parameters.", 0, 0},
	{132001, WA_ERR_TEMPLATE, NULL, NULL, 0, "template does not exist in that language, or is not approved",
	"Check the template name and language (configure_event) and its approval in WhatsApp Manager, then sync_templates().", 0, 0},
	{132005, WA_ERR_TEMPLATE, NULL, NULL, 0, "translated text too long",
	"Shorten the template's parameters or body.", 0, 0},
	{132007, WA_ERR_TEMPLATE, NULL, NULL, 0, "template content violates a WhatsApp policy",
	"Edit the template in WhatsApp Manager and submit it again.", 0, 0},
	{132012, WA_ERR_TEMPLATE, NULL, NULL, 0, "template parameter format mismatch",
	"Make the parameter values match the template's expected format.", 0, 0},
	{132015, WA_ERR_TEMPLATE, NULL, "PAUSED", 0, "template is paused for low quality",
	"Edit the template in WhatsApp Manager or wait for it to be unpaused, then sync_templates().", 0, 0},
	{132016, WA_ERR_TEMPLATE, NULL, "DISABLED", 0, "template is disabled for low quality",
	"Create a new template and set it with configure_event(template_name => ...).", 0, 0},
	{131053, WA_ERR_TEMPLATE, NULL, NULL, 0, "media upload error (template header)",
	"Fix the template's header media.", 0, 0},
	{131063, WA_ERR_TEMPLATE, NULL, NULL, 0, "template was recategorised as marketing",
	"Marketing templates are off for this number; choose a utility template for this event.", 0, 0},

	/* account or credentials */
	{0, WA_ERR_ACCOUNT, NULL, NULL, 0, "authentication exception",
	"Give a valid permanent System User access token: configure(access_token => ...).", 0, 0},
	{190, WA_ERR_ACCOUNT, NULL, NULL, 0, "access token expired or invalidated",
	"Give a valid permanent System User access token: configure(access_token => ...).", 0, 0},
	{3, WA_ERR_ACCOUNT, NULL, NULL, 0, "API method not permitted for this app",
	"Check the app's permissions (whatsapp_business_messaging) and the token.", 0, 0},
	{10, WA_ERR_ACCOUNT, NULL, NULL, 0, "permission denied",
	"Grant whatsapp_business_messaging to the System User's token and check the phone number ID.", 0, 0},
	{131005, WA_ERR_ACCOUNT, NULL, NULL, 0, "access denied",
	"Grant whatsapp_business_messaging to the System User's token.", 0, 0},
	{131031, WA_ERR_ACCOUNT, NULL, NULL, 0, "business account is restricted or disabled",
	"Resolve the restriction in WhatsApp Manager; dispatch resumes after a successful check_connection().", 0, 0},
	{131037, WA_ERR_ACCOUNT, NULL, NULL, 0, "phone number needs an approved display name",
	"Get the display name approved in WhatsApp Manager.", 0, 0},
	{131042, WA_ERR_ACCOUNT, NULL, NULL, 0, "business eligibility payment issue",
	"Fix the payment method in WhatsApp Manager.", 0, 0},
	{131045, WA_ERR_ACCOUNT, NULL, NULL, 0, "phone number certificate or registration issue",
	"Register the phone number again.", 0, 0},
	{133010, WA_ERR_ACCOUNT, NULL, NULL, 0, "phone number not registered on the Cloud API",
	"Register the phone number with the Cloud API.", 0, 0},
	{33, WA_ERR_ACCOUNT, NULL, NULL, 0, "phone number ID does not exist or was deleted",
	"Check configure(phone_number_id => ...).", 0, 0},
	{368, WA_ERR_ACCOUNT, NULL, NULL, 0, "temporarily blocked for policy violations",
	"Review the account's policy status in WhatsApp Manager.", 0, 0},
	{131064, WA_ERR_ACCOUNT, NULL, NULL, 0, "template-violation messaging limit",
	"The limit lifts by itself; dispatch resumes after a successful check_connection().", 0, 0},

	/* throttled */
	{130429, WA_ERR_THROTTLED, NULL, NULL, 0, "throughput rate limit reached (Cloud API messages per second)",
	"Lower configure(max_rate => ...); the worker halves its own rate for now.", 0, 0},
	{4, WA_ERR_THROTTLED, NULL, NULL, 0, "application request limit reached",
	"The worker slows down and retries.", 0, 0},
	{80007, WA_ERR_THROTTLED, NULL, NULL, 0, "WhatsApp Business Account rate limit reached",
	"The worker slows down and retries.", 0, 0},
	{131048, WA_ERR_THROTTLED, NULL, NULL, 900, "spam rate limit hit (number quality)",
	"All sending pauses for a cool-down; check the number's quality rating in WhatsApp Manager.", 0, 0},

	/* pair rate limit */
	{131056, WA_ERR_PAIR_RATE, NULL, NULL, 0, "too many messages to this recipient (pair rate limit)",
	"That recipient's messages wait 4^n seconds; others go on.", 0, 0},

	/* transient */
	{1, WA_ERR_TRANSIENT, NULL, NULL, 0, "API unknown error", "Retried with backoff.", 0, 0},
	{2, WA_ERR_TRANSIENT, NULL, NULL, 0, "API service temporarily unavailable", "Retried with backoff.", 0, 0},
	{131000, WA_ERR_TRANSIENT, NULL, NULL, 0, "something went wrong", "Retried with backoff.", 0, 0},
	{131016, WA_ERR_TRANSIENT, NULL, NULL, 0, "service unavailable", "Retried with backoff.", 0, 0},
	{131057, WA_ERR_TRANSIENT, NULL, NULL, 0, "account in maintenance mode", "Retried with backoff.", 0, 0},
	{133004, WA_ERR_TRANSIENT, NULL, NULL, 0, "server temporarily unavailable", "Retried with backoff.", 0, 0},
};

/* Answers decided by the HTTP status alone (no Graph error object). */
static const WaGraphError http_transient = {-1, WA_ERR_TRANSIENT, NULL, NULL, 0, "server error or no valid answer", "Retried with backoff.", 0, 0};
static const WaGraphError http_timeout = {-1, WA_ERR_TRANSIENT, NULL, NULL, 0, "timeout or connection error", "Retried with backoff; check api_base_url and the network.", 0, 0};
static const WaGraphError http_throttled = {-1, WA_ERR_THROTTLED, NULL, NULL, 0, "HTTP 429 too many requests", "The worker slows down and retries.", 0, 0};
static const WaGraphError http_auth = {-1, WA_ERR_ACCOUNT, NULL, NULL, 0, "HTTP authentication or permission error", "Check the access token and the phone number ID.", 0, 0};
static const WaGraphError permission = {-1, WA_ERR_ACCOUNT, NULL, NULL, 0, "permission error", "Grant the token the whatsapp_business_messaging permission.", 0, 0};
static const WaGraphError unknown_code = {-1, WA_ERR_MESSAGE, NULL, NULL, 0, "unclassified Graph API error", "See error_message; the message was not retried.", 0, 0};
static const WaGraphError ok = {-1, WA_ERR_NONE, NULL, NULL, 0, "ok", NULL, 0, 0};

/*
 * What each class does (indexed by WaErrorClass).  The per-code parts
 * (blacklist source, template status, cool-down) are in the table above.
 */
static const WaErrorEffect class_effects[] = {
	[WA_ERR_NONE] = {WA_RETRY_NONE, false, false, false, false, false},
	/* on_send, error_hint, hold_template, pause_account, slow_down, stop_batch */
	[WA_ERR_RECIPIENT] = {WA_RETRY_NONE, false, false, false, false, false},
	[WA_ERR_MESSAGE] = {WA_RETRY_NONE, true, false, false, false, false},
	[WA_ERR_TEMPLATE] = {WA_RETRY_REQUEUE, false, true, false, false, false},
	[WA_ERR_ACCOUNT] = {WA_RETRY_REQUEUE, false, false, true, false, true},
	[WA_ERR_THROTTLED] = {WA_RETRY_THROTTLED, false, false, false, true, true},
	[WA_ERR_PAIR_RATE] = {WA_RETRY_PAIR, false, false, false, false, false},
	[WA_ERR_TRANSIENT] = {WA_RETRY_BACKOFF, false, false, false, false, false},
};

static const char *const retry_names[] = {
	[WA_RETRY_NONE] = "fail",
	[WA_RETRY_REQUEUE] = "requeue",
	[WA_RETRY_BACKOFF] = "backoff",
	[WA_RETRY_THROTTLED] = "throttled",
	[WA_RETRY_PAIR] = "pair_wait",
};

/* Classify by code, then by HTTP status; answered: a 2xx is a success. */
static const WaGraphError *
lookup(int code, int http_status, bool answered)
{
	if (code >= 0)
	{
		for (size_t i = 0; i < lengthof(graph_errors); i++)
			if (graph_errors[i].code == code)
				return &graph_errors[i];
		/* 200-299: permission errors */
		if (code >= 200 && code <= 299)
			return &permission;
	}
	if (http_status == 0)
		return &http_timeout;
	if (http_status >= 500)
		return &http_transient;
	if (http_status == 429)
		return &http_throttled;
	if (code < 0 && (http_status == 401 || http_status == 403))
		return &http_auth;
	if (http_status >= 200 && http_status < 300 && code < 0)
		return answered ? &ok : &http_transient;
	if (code < 0 && http_status < 400)
		return &http_transient;	/* e.g. a redirect or a non-JSON 200 */
	return &unknown_code;
}

const WaGraphError *
wa_graph_error_lookup(int code, int http_status)
{
	return lookup(code, http_status, true);
}

const WaGraphError *
wa_graph_failure_lookup(int code, int http_status)
{
	return lookup(code, http_status, false);
}

const WaErrorEffect *
wa_error_effect(const WaGraphError *ge)
{
	return &class_effects[ge->cls];
}

const char *
wa_error_class_name(WaErrorClass cls)
{
	switch (cls)
	{
		case WA_ERR_NONE:
			return "ok";
		case WA_ERR_RECIPIENT:
			return "recipient";
		case WA_ERR_MESSAGE:
			return "message";
		case WA_ERR_TEMPLATE:
			return "template";
		case WA_ERR_ACCOUNT:
			return "account";
		case WA_ERR_THROTTLED:
			return "throttled";
		case WA_ERR_PAIR_RATE:
			return "pair_rate";
		case WA_ERR_TRANSIENT:
			return "transient";
	}
	return "unknown";
}

/* wa_notify.graph_error_class(code int, http_status int) -> text */
PG_FUNCTION_INFO_V1(wa_notify_graph_error_class);
Datum
wa_notify_graph_error_class(PG_FUNCTION_ARGS)
{
	int			code = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
	int			http = PG_ARGISNULL(1) ? 400 : PG_GETARG_INT32(1);

	PG_RETURN_TEXT_P(cstring_to_text(wa_error_class_name(wa_graph_error_lookup(code, http)->cls)));
}

/*
 * One row of the table as SQL sees it.  The columns, in this order (1.0's
 * five first, so that the 1.0 definition of wa_notify._graph_errors() still
 * gets what it asks for): code, class, blacklist_source, title, hint,
 * on_send, error_hint, hold_template, template_status, pause_account,
 * cooldown_secs, slow_down, stop_batch, retry_after_secs, retry_max.  Fills
 * the first natts.
 */
#define WA_ERROR_COLS 15
static void
error_row(const WaGraphError *ge, int natts, Datum *values, bool *nulls)
{
	const WaErrorEffect *ef = wa_error_effect(ge);
	Datum		all[WA_ERROR_COLS];
	bool		null_all[WA_ERROR_COLS] = {0};

	all[0] = Int32GetDatum(ge->code);
	null_all[0] = ge->code < 0;
	all[1] = CStringGetTextDatum(wa_error_class_name(ge->cls));
	null_all[2] = ge->blacklist_source == NULL;
	all[2] = null_all[2] ? (Datum) 0 : CStringGetTextDatum(ge->blacklist_source);
	all[3] = CStringGetTextDatum(ge->title);
	null_all[4] = ge->hint == NULL;
	all[4] = null_all[4] ? (Datum) 0 : CStringGetTextDatum(ge->hint);
	all[5] = CStringGetTextDatum(retry_names[ef->on_send]);
	all[6] = BoolGetDatum(ef->error_hint);
	all[7] = BoolGetDatum(ef->hold_template);
	null_all[8] = ge->template_status == NULL;
	all[8] = null_all[8] ? (Datum) 0 : CStringGetTextDatum(ge->template_status);
	all[9] = BoolGetDatum(ef->pause_account);
	all[10] = Int32GetDatum(ge->cooldown_secs);
	all[11] = BoolGetDatum(ef->slow_down);
	all[12] = BoolGetDatum(ef->stop_batch);
	all[13] = Int32GetDatum(ge->retry_after_secs);
	all[14] = Int32GetDatum(ge->retry_max);
	for (int i = 0; i < natts && i < WA_ERROR_COLS; i++)
	{
		values[i] = all[i];
		nulls[i] = null_all[i];
	}
	for (int i = WA_ERROR_COLS; i < natts; i++)
		nulls[i] = true;
}

/*
 * wa_notify._graph_error(code int, http_status int): the row that applies to
 * a failed request or a failed status (code NULL: no error object; http
 * NULL: 400, as for a webhook's error).
 */
PG_FUNCTION_INFO_V1(wa_notify_graph_error);
Datum
wa_notify_graph_error(PG_FUNCTION_ARGS)
{
	int			code = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
	int			http = PG_ARGISNULL(1) ? 400 : PG_GETARG_INT32(1);
	TupleDesc	tupdesc;
	Datum	   *values;
	bool	   *nulls;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	error_row(wa_graph_failure_lookup(code, http), tupdesc->natts, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* wa_notify._graph_errors(): the table, for the view wa_notify.graph_errors */
PG_FUNCTION_INFO_V1(wa_notify_graph_errors);
Datum
wa_notify_graph_errors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	tupdesc;
	MemoryContext oldcxt;
	Datum	   *values;
	bool	   *nulls;

	/* materialize mode, written out so that it builds on 13-17 alike */
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(oldcxt);
	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	for (size_t i = 0; i < lengthof(graph_errors); i++)
	{
		error_row(&graph_errors[i], tupdesc->natts, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
