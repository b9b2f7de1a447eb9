/*-------------------------------------------------------------------------
 * graph_errors.h
 *	  The Graph API error-class table (doc/design.md, "Dispatch and Graph
 *	  errors"), shared by the dispatcher (synchronous answers) and the webhook (asynchronous
 *	  "failed" statuses).
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

typedef struct WaGraphError
{
	int			code;
	WaErrorClass cls;
	const char *blacklist_source;	/* "auto", "opt_out" or NULL */
	const char *title;			/* what it means */
	const char *hint;			/* what to do (a sentence) */
} WaGraphError;

/*
 * Classify a Graph error.  code < 0 means "no Graph error object" (then the
 * HTTP status decides; http_status 0 means no HTTP answer at all: timeout or
 * connection error).  Never returns NULL.
 */
extern const WaGraphError *wa_graph_error_lookup(int code, int http_status);
extern const char *wa_error_class_name(WaErrorClass cls);

/* 131048 (spam rate limit): the cool-down is wa_notify._spam_cooldown(). */

#endif
