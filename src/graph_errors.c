/*-------------------------------------------------------------------------
 * graph_errors.c
 *	  One table of Graph API / WhatsApp Cloud API error codes and what
 *	  wa_notify does about each (doc/design.md, "Dispatch and Graph
 *	  errors").  The dispatcher uses it for the answer to a send, the webhook for asynchronous "failed" statuses,
 *	  and SQL sees it as wa_notify.graph_error_class() and the view
 *	  wa_notify.graph_errors.
 *
 *	  Codes follow Meta's "Error codes" page of the WhatsApp Business
 *	  Platform (Cloud API).  error_subcode is deprecated and not used;
 *	  error_data.details carries the readable text.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "graph_errors.h"

#define R WA_ERR_RECIPIENT
#define M WA_ERR_MESSAGE
#define T WA_ERR_TEMPLATE
#define A WA_ERR_ACCOUNT
#define TH WA_ERR_THROTTLED
#define P WA_ERR_PAIR_RATE
#define TR WA_ERR_TRANSIENT

static const WaGraphError graph_errors[] = {
	/* recipient unreachable */
	{131026, R, "auto", "message undeliverable",
	"The number is not on WhatsApp, has not accepted the current terms, or uses an old app; it was blacklisted."},
	{131021, R, "auto", "recipient cannot be the sender",
	"The recipient is the business's own number; it was blacklisted."},
	{130403, R, "auto", "this business blocked the user",
	"The business blocked this user in WhatsApp; unblock in WhatsApp Manager and then unblock() here."},
	{131050, R, "opt_out", "user stopped marketing messages from this business",
	"The customer opted out; Meta says not to retry. The number was blacklisted as opt_out."},

	/* this message only */
	{131047, M, NULL, "re-engagement message: more than 24 hours since the customer's last reply",
	"Free-form text is refused outside the 24-hour window; turn templates on (configure(use_templates => true))."},
	{470, M, NULL, "message sent outside the 24-hour window (legacy code)",
	"Free-form text is refused outside the 24-hour window; turn templates on (configure(use_templates => true))."},
	{131051, M, NULL, "unsupported message type",
	"Use a template or text message."},
	{131049, M, NULL, "Meta chose not to deliver (per-user marketing limit)",
	"Do not resend to this customer within 24 hours."},
	{100, M, NULL, "invalid parameter",
	"Check the event's template parameters and the message's phone with preview()."},
	{131008, M, NULL, "required parameter is missing",
	"Check the event's template parameters with preview()."},
	{131009, M, NULL, "parameter value is not valid",
	"Check the phone number and the template parameters with preview()."},
	{135000, M, NULL, "generic user error (bad or missing parameter)",
	"Check the message with preview()."},
	{130497, M, NULL, "business account is restricted from messaging users in this country",
	"The recipient's country is barred for this account; nothing to retry."},
	{130472, M, NULL, "user's number is part of an experiment",
	"Meta held this marketing message back for an experiment; nothing to retry."},
	{131030, M, NULL, "recipient phone number not in allowed list",
	"The sender is a test number; add the recipient to the allowed list in the app dashboard or use a production number."},

	/* event's template broken */
	{132000, T, NULL, "template parameter count mismatch",
	"Make configure_event(params => ...) list exactly the template's {{n}} parameters."},
	{132001, T, NULL, "template does not exist in that language, or is not approved",
	"Check the template name and language (configure_event) and its approval in WhatsApp Manager, then sync_templates()."},
	{132005, T, NULL, "translated text too long",
	"Shorten the template's parameters or body."},
	{132007, T, NULL, "template content violates a WhatsApp policy",
	"Edit the template in WhatsApp Manager and submit it again."},
	{132012, T, NULL, "template parameter format mismatch",
	"Make the parameter values match the template's expected format."},
	{132015, T, NULL, "template is paused for low quality",
	"Edit the template in WhatsApp Manager or wait for it to be unpaused, then sync_templates()."},
	{132016, T, NULL, "template is disabled for low quality",
	"Create a new template and set it with configure_event(template_name => ...)."},
	{131053, T, NULL, "media upload error (template header)",
	"Fix the template's header media."},
	{131063, T, NULL, "template was recategorised as marketing",
	"Marketing templates are off for this number; choose a utility template for this event."},

	/* account or credentials */
	{0, A, NULL, "authentication exception",
	"Give a valid permanent System User access token: configure(access_token => ...)."},
	{190, A, NULL, "access token expired or invalidated",
	"Give a valid permanent System User access token: configure(access_token => ...)."},
	{3, A, NULL, "API method not permitted for this app",
	"Check the app's permissions (whatsapp_business_messaging) and the token."},
	{10, A, NULL, "permission denied",
	"Grant whatsapp_business_messaging to the System User's token and check the phone number ID."},
	{131005, A, NULL, "access denied",
	"Grant whatsapp_business_messaging to the System User's token."},
	{131031, A, NULL, "business account is restricted or disabled",
	"Resolve the restriction in WhatsApp Manager; dispatch resumes after a successful check_connection()."},
	{131037, A, NULL, "phone number needs an approved display name",
	"Get the display name approved in WhatsApp Manager."},
	{131042, A, NULL, "business eligibility payment issue",
	"Fix the payment method in WhatsApp Manager."},
	{131045, A, NULL, "phone number certificate or registration issue",
	"Register the phone number again."},
	{133010, A, NULL, "phone number not registered on the Cloud API",
	"Register the phone number with the Cloud API."},
	{33, A, NULL, "phone number ID does not exist or was deleted",
	"Check configure(phone_number_id => ...)."},
	{368, A, NULL, "temporarily blocked for policy violations",
	"Review the account's policy status in WhatsApp Manager."},
	{131064, A, NULL, "template-violation messaging limit",
	"The limit lifts by itself; dispatch resumes after a successful check_connection()."},

	/* throttled */
	{130429, TH, NULL, "throughput rate limit reached (Cloud API messages per second)",
	"Lower configure(max_rate => ...); the worker halves its own rate for now."},
	{4, TH, NULL, "application request limit reached",
	"The worker slows down and retries."},
	{80007, TH, NULL, "WhatsApp Business Account rate limit reached",
	"The worker slows down and retries."},
	{131048, TH, NULL, "spam rate limit hit (number quality)",
	"All sending pauses for a cool-down; check the number's quality rating in WhatsApp Manager."},

	/* pair rate limit */
	{131056, P, NULL, "too many messages to this recipient (pair rate limit)",
	"That recipient's messages wait 4^n seconds; others go on."},

	/* transient */
	{1, TR, NULL, "API unknown error", "Retried with backoff."},
	{2, TR, NULL, "API service temporarily unavailable", "Retried with backoff."},
	{131000, TR, NULL, "something went wrong", "Retried with backoff."},
	{131016, TR, NULL, "service unavailable", "Retried with backoff."},
	{131057, TR, NULL, "account in maintenance mode", "Retried with backoff."},
	{133004, TR, NULL, "server temporarily unavailable", "Retried with backoff."},
};

/* Answers decided by the HTTP status alone (no Graph error object). */
static const WaGraphError http_transient = {-1, TR, NULL, "server error or no valid answer", "Retried with backoff."};
static const WaGraphError http_timeout = {-1, TR, NULL, "timeout or connection error", "Retried with backoff; check api_base_url and the network."};
static const WaGraphError http_throttled = {-1, TH, NULL, "HTTP 429 too many requests", "The worker slows down and retries."};
static const WaGraphError http_auth = {-1, A, NULL, "HTTP authentication or permission error", "Check the access token and the phone number ID."};
static const WaGraphError unknown_code = {-1, M, NULL, "unclassified Graph API error", "See error_message; the message was not retried."};
static const WaGraphError ok = {-1, WA_ERR_NONE, NULL, "ok", NULL};

const WaGraphError *
wa_graph_error_lookup(int code, int http_status)
{
	if (code >= 0)
	{
		for (size_t i = 0; i < lengthof(graph_errors); i++)
			if (graph_errors[i].code == code)
				return &graph_errors[i];
		/* 200-299: permission errors */
		if (code >= 200 && code <= 299)
		{
			static const WaGraphError perm = {-1, A, NULL, "permission error",
			"Grant the token the whatsapp_business_messaging permission."};

			return &perm;
		}
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
		return &ok;
	if (code < 0 && http_status < 400)
		return &http_transient;	/* e.g. a redirect or a non-JSON 200 */
	return &unknown_code;
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

/* wa_notify._graph_errors(): the table, for the view wa_notify.graph_errors */
PG_FUNCTION_INFO_V1(wa_notify_graph_errors);
Datum
wa_notify_graph_errors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	TupleDesc	tupdesc;
	MemoryContext oldcxt;

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
	for (size_t i = 0; i < lengthof(graph_errors); i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = Int32GetDatum(graph_errors[i].code);
		values[1] = CStringGetTextDatum(wa_error_class_name(graph_errors[i].cls));
		if (graph_errors[i].blacklist_source)
			values[2] = CStringGetTextDatum(graph_errors[i].blacklist_source);
		else
			nulls[2] = true;
		values[3] = CStringGetTextDatum(graph_errors[i].title);
		values[4] = CStringGetTextDatum(graph_errors[i].hint);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
