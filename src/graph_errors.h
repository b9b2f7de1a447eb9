/*-------------------------------------------------------------------------
 * graph_errors.h
 *	  The Graph API error table (doc/dispatch.md "Outcomes"): for each error
 *	  code its class and what it does.  Classification and effects live
 *	  here only; the dispatcher (synchronous answers) and the webhook
 *	  (asynchronous "failed" statuses) both have the effects applied by one
 *	  SQL function, wa_notify._apply_error(), which reads them from this
 *	  table through wa_notify._graph_error(code, http).
 *-------------------------------------------------------------------------
 */
#ifndef WA_GRAPH_ERRORS_H
#define WA_GRAPH_ERRORS_H

typedef enum WaErrorClass
{
	WA_ERR_NONE = 0,			/* success */
	WA_ERR_RECIPIENT,			/* recipient unreachable: fail + blacklist */
	WA_ERR_MESSAGE,				/* this message only: fail, hint */
	WA_ERR_TEMPLATE,			/* event's template broken: hold event */
	WA_ERR_ACCOUNT,				/* account or credentials: pause dispatch */
	WA_ERR_THROTTLED,			/* throttled: retry later, lower own rate */
	WA_ERR_PAIR_RATE,			/* pair rate limit: that recipient waits 4^n s */
	WA_ERR_TRANSIENT			/* transient: retry with backoff */
} WaErrorClass;

/* What becomes of the message a send failed for (column "on_send"). */
typedef enum WaRetry
{
	WA_RETRY_NONE = 0,			/* "fail": failed at once */
	WA_RETRY_REQUEUE,			/* "requeue": back to the queue, no delay (held or paused) */
	WA_RETRY_BACKOFF,			/* "backoff": 5 x 2^(n-1) s, at most max_attempts */
	WA_RETRY_THROTTLED,			/* "throttled": 2 x 2^n s, capped at 300 s */
	WA_RETRY_PAIR				/* "pair_wait": the recipient waits 4^n s */
} WaRetry;

/*
 * What an error does, whichever way it was reported.  Every field is a
 * column of the view wa_notify.graph_errors.
 */
typedef struct WaErrorEffect
{
	WaRetry		on_send;		/* the message's fate after a send */
	bool		error_hint;		/* the hint is appended to error_message */
	bool		hold_template;	/* the event and its queued messages are held */
	bool		pause_account;	/* dispatch pauses (state.paused_*) */
	bool		slow_down;		/* the sender halves its own rate */
	bool		stop_batch;		/* nothing more starts in this batch */
} WaErrorEffect;

typedef struct WaGraphError
{
	int			code;
	WaErrorClass cls;
	const char *blacklist_source;	/* "auto", "opt_out" or NULL */
	const char *template_status;	/* event.template_status it proves, or NULL */
	int			cooldown_secs;	/* all sending pauses this long (0: none) */
	const char *title;			/* what it means */
	const char *hint;			/* what to do (a sentence) */
	int			retry_after_secs;	/* failed, yet tried again this much later
									 * (from the failure), ... */
	int			retry_max;		/* ... at most this many times (0: never) */
} WaGraphError;

/*
 * Classify a Graph error.  code < 0 means "no Graph error object" (then the
 * HTTP status decides; http_status 0 means no HTTP answer at all: timeout or
 * connection error).  A 2xx without an error object is "ok".  Never returns
 * NULL.
 */
extern const WaGraphError *wa_graph_error_lookup(int code, int http_status);

/*
 * The same for a request known to have failed: a 2xx without an error
 * object is then no valid answer (transient), never "ok".
 */
extern const WaGraphError *wa_graph_failure_lookup(int code, int http_status);

extern const WaErrorEffect *wa_error_effect(const WaGraphError *ge);
extern const char *wa_error_class_name(WaErrorClass cls);

#endif
